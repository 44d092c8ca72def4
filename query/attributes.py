"""Finding jobs and artifacts by attribute: AND-ed groups of OR-ed comparisons, compiled to SQL.

A query is a list of groups; a group is comparisons joined by ``|``; all groups must hold::

    ["job.name = softmean", "prov.model = 12 | prov.model = 9", "time.dow >= 6"]

Attributes of jobs:
- ``job.<column>``: status, name, kind, host, submitter, workflow_id, dag_node, parent_job_id, exit_code,
  attempts, duration_ms, cpu_user_s, peak_rss_bytes, event_count (numeric ones compare as numbers);
- provenance, by namespace: ``param.<key>`` (a parameter: the program's invocation arguments, e.g.
  ``param.band``), ``ctx.<key>`` (context: ``ctx.software.numpy``, ``ctx.git.commit``), ``sys.<key>`` (collected
  by jobprov: ``sys.host``, ``sys.python``); ``prov.<key>`` or a bare key names a key in any namespace
  (``stream_processors.provenance.namespace_of`` says which key is where);
- ``ann.<key>``: an annotation of the job;
- ``time.<field>`` of the job's start: ``dow`` (1 = Monday … 7), ``hour``, ``date`` (YYYY-MM-DD).
Attributes of artifacts: ``uri``, ``role``, ``checksum``, ``relation`` (used/produced), ``job.<…>`` of the job
on the edge, and ``ann.<key>`` (an annotation of the artifact).

:func:`group_jobs` counts the matching jobs per status in groups of provenance keys or job columns.

Operators: ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~`` (prefix), ``glob`` (``*`` within a path segment,
``**`` across segments, ``?`` one character: ``uri glob s3://b/*/calexp-*.fits``), and ``ATTR exists`` /
``ATTR missing`` (no value). Values are text, except that job numbers, ``time.dow``/``hour`` and a provenance
value compared with ``<``, ``<=``, ``>``, ``>=`` to a number compare as numbers. Every value and key reaches
ClickHouse as a query parameter, every column name comes from the fixed tables above.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobprov.errors import QueryError
from jobprov.query.limits import ROWS
from jobprov.query.names import provenance_keys, stored_key, unknown
from jobprov.query.store import Store

_OPS = ("<=", ">=", "!=", "=", "<", ">", "~", "glob", "exists", "missing")
_COMPARISON = re.compile(
    r"^\s*(?P<attr>[A-Za-z_][\w.\-:]*)\s*(?P<op><=|>=|!=|=|<|>|~|(?<=\s)glob(?=\s))\s*(?P<value>.*?)\s*$"
)
_PRESENCE = re.compile(r"^\s*(?P<attr>[A-Za-z_][\w.\-:]*)\s+(?P<op>exists|missing)\s*$")
_ORDERED = ("<", "<=", ">", ">=")
_JOB_TEXT = {"status", "name", "kind", "host", "submitter", "workflow_id", "dag_node", "parent_job_id", "job_id"}
_JOB_NUMBER = {"exit_code", "attempts", "duration_ms", "cpu_user_s", "cpu_system_s", "peak_rss_bytes", "event_count"}
_TIME = {"dow": "toDayOfWeek(j.started_at)", "hour": "toHour(j.started_at)", "date": "toString(toDate(j.started_at))"}
_ARTIFACT_TEXT = {"uri": "a.uri", "role": "a.role", "checksum": "a.checksum", "relation": "a.relation"}
MAX_GROUPS = 20
MAX_COMPARISONS = 100


@dataclass(frozen=True)
class Comparison:
    attribute: str
    op: str
    value: str


def parse(groups: Sequence[str]) -> list[list[Comparison]]:
    """Parse groups of ``attr op value`` joined by ``|``; raises QueryError naming the bad part."""
    if len(groups) > MAX_GROUPS:
        raise QueryError(f"at most {MAX_GROUPS} groups")
    parsed: list[list[Comparison]] = []
    total = 0
    for group in groups:
        comparisons = []
        for part in group.split("|"):
            presence = _PRESENCE.match(part)
            if presence is not None:
                comparisons.append(Comparison(presence["attr"], presence["op"], ""))
                continue
            match = _COMPARISON.match(part)
            if match is None or not match["value"]:
                raise QueryError(
                    f"cannot read {part.strip()!r}: expected ATTRIBUTE OP VALUE or ATTRIBUTE exists|missing, "
                    f"OP one of {' '.join(_OPS[:-2])}"
                )
            comparisons.append(Comparison(match["attr"], match["op"], match["value"]))
        total += len(comparisons)
        parsed.append(comparisons)
    if total > MAX_COMPARISONS:
        raise QueryError(f"at most {MAX_COMPARISONS} comparisons")
    return parsed


class _Compiler:
    def __init__(self) -> None:
        self.params: dict[str, object] = {}

    def param(self, value: object, type_: str = "String") -> str:
        name = f"q{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"

    def compare(self, expr: str, op: str, value: str, numeric: bool = False, present: str | None = None) -> str:
        """``expr op value``; ``present``: the test that the attribute is there (default: not NULL)."""
        if op in ("exists", "missing"):
            test = present or f"{expr} IS NOT NULL"
            return test if op == "exists" else f"NOT ({test})"
        if op == "~":
            return f"startsWith(toString({expr}), {self.param(value)})"
        if op == "glob":
            return f"match(toString({expr}), {self.param(glob_pattern(value))})"
        if numeric:
            try:
                number = float(value)
            except ValueError as exc:
                raise QueryError(f"{value!r} is not a number") from exc
            return f"{expr} {op} {self.param(number, 'Float64')}"
        return f"{expr} {op} {self.param(value)}"

    def annotation(self, target_type: str, target_expr: str, key: str, op: str, value: str) -> str:
        # "!=" means "annotated with another value", "not annotated so" is NOT ("=")
        inner = "1" if op in ("exists", "missing") else self.compare("value", op, value)
        annotated = (
            f"{target_expr} IN (SELECT target FROM {{db}}.annotations FINAL WHERE target_type = '{target_type}' "
            f"AND key_name = {self.param(key)} AND {inner})"
        )
        return f"NOT ({annotated})" if op == "missing" else annotated

    def job_condition(self, c: Comparison) -> str:
        attr = c.attribute
        if attr.startswith("job."):
            column = attr.removeprefix("job.")
            if column in _JOB_TEXT:
                return self.compare(f"j.{column}", c.op, c.value)
            if column in _JOB_NUMBER:
                return self.compare(f"j.{column}", c.op, c.value, numeric=True)
            raise QueryError(f"unknown job attribute {attr!r}; known: {', '.join(sorted(_JOB_TEXT | _JOB_NUMBER))}")
        if attr.startswith("time."):
            field = attr.removeprefix("time.")
            if field not in _TIME:
                raise QueryError(f"unknown time field {attr!r}; known: {', '.join(sorted(_TIME))}")
            return self.compare(_TIME[field], c.op, c.value, numeric=field != "date")
        if attr.startswith("ann."):
            return self.annotation("job", "j.job_id", attr.removeprefix("ann."), c.op, c.value)
        key = self.param(stored_key(attr))
        present = f"mapContains(p.values, {key})"
        if c.op in _ORDERED and _is_number(c.value):  # a number compares as a number (model > 9 holds for 12)
            return f"{present} AND " + self.compare(f"toFloat64OrNull(p.values[{key}])", c.op, c.value, numeric=True)
        return self.compare(f"p.values[{key}]", c.op, c.value, present=present)

    def artifact_condition(self, c: Comparison) -> str:
        attr = c.attribute
        if attr in _ARTIFACT_TEXT:
            return self.compare(_ARTIFACT_TEXT[attr], c.op, c.value)
        if attr.startswith("ann."):
            return self.annotation("artifact", "a.uri", attr.removeprefix("ann."), c.op, c.value)
        if attr.startswith("job."):
            return self.job_condition(c)
        raise QueryError(f"unknown artifact attribute {attr!r}; known: uri, role, checksum, relation, job.*, ann.*")


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def glob_pattern(glob: str) -> str:
    """A glob as an anchored regular expression over paths: ``*`` matches within one path segment (no ``/``),
    ``**`` across segments, ``?`` one character of a segment; everything else is literal."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = glob[i]
        out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
        i += 1
    return "^" + "".join(out) + "$"


def _where(groups: list[list[Comparison]], condition: Callable[[Comparison], str]) -> str:
    clauses = ["(" + " OR ".join(condition(c) for c in group) + ")" for group in groups]
    return " AND ".join(clauses) if clauses else "1"


def find_jobs(store: Store, query: Sequence[str], limit: int = 1000) -> list[str]:
    """Ids of the jobs matching every group of the query."""
    ROWS.check("limit", limit)
    compiler = _Compiler()
    groups = parse(query)
    where = _where(groups, compiler.job_condition)
    sql = (
        "SELECT j.job_id FROM {db}.jobs AS j FINAL "
        "LEFT JOIN (SELECT job_id, values FROM {db}.provenance FINAL) AS p ON p.job_id = j.job_id "
        f"WHERE {where} ORDER BY j.job_id LIMIT {compiler.param(limit, 'UInt32')}"
    )
    found = [r[0] for r in store.rows(sql, **compiler.params)]
    if not found:  # nothing matched: say so if a provenance key is one no job has (`status` for `job.status`)
        _check_provenance_keys(store, [c for group in groups for c in group])
    return found


def _check_provenance_keys(store: Store, comparisons: Sequence[Comparison]) -> None:
    keys = None
    for c in comparisons:
        if c.attribute.startswith(("job.", "time.", "ann.")):
            continue
        keys = keys if keys is not None else set(provenance_keys(store))
        key = stored_key(c.attribute)
        if key not in keys:
            named = {f"job.{k}" for k in _JOB_TEXT | _JOB_NUMBER} | {f"time.{k}" for k in _TIME}
            prefer = [f"job.{key}"] if key in _JOB_TEXT | _JOB_NUMBER else []
            raise unknown("attribute", c.attribute, named | keys, " (no job has this provenance key)", prefer=prefer)


def find_artifacts(store: Store, query: Sequence[str], limit: int = 1000) -> list[str]:
    """URIs of artifacts matching every group (``job.*`` refers to a job that used or produced them), among the
    artifacts an edge names and those known only by an annotation."""
    ROWS.check("limit", limit)
    compiler = _Compiler()
    where = _where(parse(query), compiler.artifact_condition)
    sql = (
        "SELECT DISTINCT a.uri FROM ("
        "  SELECT substring(dst, 10) AS uri, relation, role, checksum, job_id FROM {db}.lineage FINAL"
        "  WHERE relation = 'produced' AND startsWith(dst, 'artifact:')"
        "  UNION ALL"
        "  SELECT substring(src, 10) AS uri, relation, role, checksum, job_id FROM {db}.lineage FINAL"
        "  WHERE relation = 'used' AND startsWith(src, 'artifact:')"
        "  UNION ALL"  # an artifact known by its annotations alone: no edge, no job
        "  SELECT target AS uri, '' AS relation, NULL AS role, NULL AS checksum, '' AS job_id"
        "  FROM {db}.annotations FINAL WHERE target_type = 'artifact'"
        ") AS a "
        "LEFT JOIN {db}.jobs AS j FINAL ON j.job_id = a.job_id "
        "LEFT JOIN (SELECT job_id, values FROM {db}.provenance FINAL) AS p ON p.job_id = a.job_id "
        f"WHERE {where} ORDER BY a.uri LIMIT {compiler.param(limit, 'UInt32')}"
    )
    return [r[0] for r in store.rows(sql, **compiler.params)]


MAX_GROUP_KEYS = 8


def group_jobs(store: Store, keys: Sequence[str], query: Sequence[str] = (), limit: int = 1000) -> list[dict[str, Any]]:
    """Jobs (those matching ``query``, every job by default) grouped by ``keys``, with how many are in each status:
    ``[{"group": {key: value}, "total": n, "statuses": {status: n}}]``, the largest groups first (at most
    ``limit``). A key is a provenance name as ``find`` takes it (``param.band``, ``ctx.software.numpy``,
    ``sys.host``, a bare key) or a job column ``job.<name>`` (text columns: status, name, kind, host, …); a job
    without the key is grouped under null."""
    if not 1 <= len(keys) <= MAX_GROUP_KEYS:
        raise QueryError(f"keys: between 1 and {MAX_GROUP_KEYS}")
    ROWS.check("limit", limit)
    compiler = _Compiler()
    exprs = []
    for key in keys:
        column = key.removeprefix("job.")
        if key.startswith("job.") and column in _JOB_TEXT:
            exprs.append(f"ifNull(j.{column}, '')")
        else:
            exprs.append(f"p.values[{compiler.param(stored_key(key))}]")
    where = _where(parse(query), compiler.job_condition)
    sql = (
        f"SELECT [{', '.join(exprs)}] AS grp, j.status, count() FROM {{db}}.jobs AS j FINAL "
        "LEFT JOIN (SELECT job_id, values FROM {db}.provenance FINAL) AS p ON p.job_id = j.job_id "
        f"WHERE {where} GROUP BY grp, j.status"
    )
    groups: dict[tuple[str, ...], dict[str, int]] = {}
    for values, status, count in store.rows(sql, **compiler.params):
        groups.setdefault(tuple(values), {})[status] = int(count)
    if not groups and query:
        _check_provenance_keys(store, [c for group in parse(query) for c in group])
    ranked = sorted(groups.items(), key=lambda item: (-sum(item[1].values()), item[0]))[:limit]
    return [
        {
            "group": {key: value or None for key, value in zip(keys, values, strict=True)},
            "total": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())),
        }
        for values, statuses in ranked
    ]
