# ruff: noqa: RUF009 - the field helpers below (text, number, pairs, …) return dataclasses.field(...)
"""The questions the query layer answers and their parameters, defined once.

Each question is a frozen dataclass; each field a parameter, with its type, default, bounds
(:mod:`jobprov.query.limits`), help, and its names on the command line and over HTTP. Everything else is derived
from these classes: the CLI's arguments and options (:mod:`jobprov.cli.options`), the HTTP API's routes and query
parameters (:mod:`jobprov.query.api`), the HTTP client's request (:meth:`Question.http_request`) and the local
backend's call (:mod:`jobprov.query.backend`). Adding a parameter is one field here.

A question checks its values when it is made (:meth:`Question.__post_init__`), whoever makes it: a bad value
raises :class:`ParameterError` naming the parameter and the reason, which the CLI reports as a usage error on
its option and the HTTP API as a 422 naming the query parameter. Raw values (text from a command line or a URL)
become typed ones in :meth:`Question.from_raw`, with the same errors.
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from jobprov.errors import QueryError
from jobprov.query.limits import DEPTH, DEVIATIONS, MIN_POINTS, ROWS, WINDOW, Bounds
from jobprov.stream_processors.provenance import CHANGE_KINDS

Q = TypeVar("Q", bound="Question")
KINDS = ("text", "int", "float", "flag", "time", "pairs", "many", "choice")
ARGUMENT = "ARG"  # Param.cli for a positional argument


class ParameterError(QueryError):
    """A parameter's value is out of its type, bounds or choices. ``name`` is the field, ``reason`` the rule."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Param:
    """How one field of a question is typed, bounded and named outside Python."""

    kind: str
    help: str
    http: str | None = None  # the HTTP query name (default: the field's); a path segment when the route names it
    cli: str | None = None  # the CLI option (default: --field-name), or ARGUMENT
    bounds: Bounds | None = None
    choices: tuple[str, ...] = ()
    switch: Any = None  # the value a CLI flag (cli) sets, for a field that is not a plain on/off flag
    switch_help: str = ""  # what that flag does, in the CLI's words
    metavar: str | None = None
    required: bool = False


def _field(kind: str, help: str, default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    meta = {"param": Param(kind, help, **spec)}
    if kind == "pairs":
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def argument(help: str, kind: str = "text", **spec: Any) -> Any:
    """A required parameter: a positional argument on the command line (unless ``cli`` says otherwise)."""
    return dataclasses.field(metadata={"param": Param(kind, help, **{"cli": ARGUMENT, "required": True, **spec})})


def text(help: str, **spec: Any) -> Any:
    return _field("text", help, None, **spec)


def number(default: float, bounds: Bounds, help: str, **spec: Any) -> Any:
    return _field("int" if isinstance(default, int) else "float", help, default, bounds=bounds, **spec)


def flag(help: str, default: bool = False, **spec: Any) -> Any:
    return _field("flag", help, default, **spec)


def time(help: str, **spec: Any) -> Any:
    return _field("time", help, None, **spec)


def pairs(help: str, **spec: Any) -> Any:
    return _field("pairs", help, **{"metavar": "KEY=VALUE", **spec})


def many(help: str, **spec: Any) -> Any:
    return _field("many", help, (), **spec)


def choice(choices: Sequence[str], help: str, default: str | None = None, **spec: Any) -> Any:
    return _field("choice", help, default, choices=tuple(choices), **spec)


@dataclass(frozen=True)
class Spec:
    """A field of a question with its :class:`Param` and default (``dataclasses.MISSING``: required)."""

    name: str
    param: Param
    default: Any

    @property
    def http_name(self) -> str:
        return self.param.http or self.name

    @property
    def cli_name(self) -> str:
        return self.param.cli or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Question:
    """A question to the store. ``ROUTE``: its path under ``/api/v1`` (``{name}`` or ``{name:path}`` segments are
    fields); ``SUMMARY``: one line for the API's documentation."""

    ROUTE: ClassVar[str]
    SUMMARY: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in self.specs():
            _check(spec, getattr(self, spec.name))

    @classmethod
    def specs(cls) -> list[Spec]:
        return [
            Spec(f.name, f.metadata["param"], f.default_factory() if f.default_factory is not dataclasses.MISSING
                 else f.default)
            for f in dataclasses.fields(cls)
        ]  # fmt: skip

    @classmethod
    def path_fields(cls) -> list[str]:
        return re.findall(r"\{(\w+)(?::path)?\}", cls.ROUTE)

    @classmethod
    def from_raw(cls: type[Q], values: Mapping[str, Any]) -> Q:
        """The question from raw values by field name (lists or tuples of text, text, numbers, or typed values;
        None or missing: the default)."""
        given = {}
        for spec in cls.specs():
            value = values.get(spec.name)
            if value is not None:
                given[spec.name] = _convert(spec, value)
        missing = [s.name for s in cls.specs() if s.default is dataclasses.MISSING and s.name not in given]
        if missing:
            raise ParameterError(missing[0], "required")
        return cls(**given)

    def arguments(self) -> dict[str, Any]:
        """The fields by name, as the query functions take them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def http_request(self) -> tuple[str, list[tuple[str, str]]]:
        """The path (segments percent-encoded, "/" too) and the query parameters that ask this over HTTP."""
        in_path = self.path_fields()
        path = re.sub(
            r"\{(\w+)(?::path)?\}", lambda m: urllib.parse.quote(str(getattr(self, m[1])), safe=""), self.ROUTE
        )
        query: list[tuple[str, str]] = []
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.name in in_path or value is None:
                continue
            if spec.param.kind == "pairs":
                query += [(spec.http_name, f"{k}={v}") for k, v in value.items()]
            elif spec.param.kind == "many":
                query += [(spec.http_name, str(v)) for v in value]
            elif spec.param.kind == "flag":
                query.append((spec.http_name, "true" if value else "false"))
            elif spec.param.kind == "time":
                query.append((spec.http_name, value.isoformat()))
            else:
                query.append((spec.http_name, str(value)))
        return path, query


def _convert(spec: Spec, value: Any) -> Any:
    kind = spec.param.kind
    if kind == "pairs":
        return value if isinstance(value, Mapping) else parse_pairs(spec.name, value)
    if kind == "many":
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if kind == "time":
        return parse_time(spec.name, value)
    if kind in ("int", "float") and isinstance(value, str):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise ParameterError(spec.name, f"expected a number, got {value!r}") from None
    if kind == "flag" and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ParameterError(spec.name, f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return value


def _check(spec: Spec, value: Any) -> None:
    param = spec.param
    if value is None:
        if param.required:
            raise ParameterError(spec.name, "required")
        return
    if param.kind in ("int", "float"):
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not (whole or (param.kind == "float" and isinstance(value, float))):
            wanted = "a whole number" if param.kind == "int" else "a number"
            raise ParameterError(spec.name, f"expected {wanted}, got {value!r}")
        if param.bounds is not None and not (math.isfinite(value) and param.bounds.holds(value)):
            raise ParameterError(spec.name, f"must be {param.bounds.words()}, got {value!r}")
    elif param.kind == "choice" and value not in param.choices:
        raise ParameterError(spec.name, f"one of {', '.join(param.choices)}, not {value!r}")
    elif param.kind == "many" and param.required and not value:
        raise ParameterError(spec.name, "at least one value is required")
    elif param.kind == "text" and param.required and not isinstance(value, str):
        raise ParameterError(spec.name, f"expected text, got {value!r}")


def parse_pairs(name: str, items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as a mapping (a later key wins); ParameterError naming ``name`` for any other text."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ParameterError(name, f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def parse_time(name: str, raw: str | datetime) -> datetime:
    """An ISO 8601 time (a ``Z`` suffix allowed; no zone means UTC) or a datetime, as the same instant in UTC."""
    if isinstance(raw, datetime):
        value = raw
    else:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ParameterError(name, f"{raw!r} is not an ISO 8601 time") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# --- the questions -------------------------------------------------------------------------------------------

_EXCLUDE = "Leave out jobs annotated so."
_WHERE = 'A group: "ATTR OP VALUE | …" (every group must hold).'


@dataclass(frozen=True)
class Series(Question):
    ROUTE = "/series/{metric:path}"
    SUMMARY = "A metric over time, one line per bucket or chosen keys"
    metric: str = argument("The metric.")
    group_by: tuple[str, ...] = many("Group by these provenance keys instead of the bucket.")
    filters: Mapping[str, str] = pairs("Only jobs with this provenance.", http="filter", cli="--filter")
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)
    since: datetime | None = time("ISO 8601 time: only points at or after it.")
    until: datetime | None = time("ISO 8601 time: only points before it.")
    bucket: str | None = text("Only this bucket (its id, as `jobprov query bucket` prints it).")


@dataclass(frozen=True)
class Bucket(Question):
    ROUTE = "/buckets/{metric:path}"
    SUMMARY = "Which bucket this provenance belongs to, and its baseline"
    metric: str = argument("The metric.")
    provenance: Mapping[str, str] = pairs("The provenance of the metric.", cli=ARGUMENT, metavar="KEY=VALUE...")
    last: int = number(50, ROWS, "Points in the baseline.")
    as_of: str | None = text("A job id or an ISO 8601 time: the baseline of the points strictly before it.")
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)


@dataclass(frozen=True)
class Compare(Question):
    ROUTE = "/compare"
    SUMMARY = "Provenance keys and input checksums that differ between two jobs"
    job_a: str = argument("A job id.", http="a")
    job_b: str = argument("Another job id.", http="b")
    include_env: bool = flag("Every row: environment variables, and each package.", cli="--all")
    namespace: str | None = choice(CHANGE_KINDS, "Only parameters, context, collected facts or inputs.")


@dataclass(frozen=True)
class Regressions(Question):
    ROUTE = "/regressions/{metric:path}"
    SUMMARY = "Changes of level per bucket: regressions and improvements"
    metric: str = argument("The metric.")
    method: str | None = choice(
        ("changepoint", "rolling_median"), "Default: the metric's policy in the registry (changepoint)."
    )
    window: int = number(10, WINDOW, "rolling_median: points in the baseline.")
    k: float = number(4.0, DEVIATIONS, "rolling_median: robust deviations that count.", cli="-k")
    min_points: int = number(10, MIN_POINTS, "rolling_median: points of a bucket before any is judged.")
    onset_only: bool = flag(
        "rolling_median: only the first outlier of each run of outliers.", default=True, cli="--all", switch=False,
        switch_help="rolling_median: every outlier, not only each run's first.",
    )  # fmt: skip
    exclude_annotated: Mapping[str, str] = pairs(_EXCLUDE)


@dataclass(frozen=True)
class Check(Question):
    ROUTE = "/check"
    SUMMARY = "A job's points against their buckets' current level (CI gating)"
    job_id: str | None = text("A job id.", http="job", cli=ARGUMENT)
    metric: str | None = text("Only this metric (required with --bucket).")
    bucket: str | None = text("Judge the newest job of this bucket (its id) instead of JOB_ID; needs --metric.")


@dataclass(frozen=True)
class Lineage(Question):
    ROUTE = "/lineage"
    SUMMARY = "Ancestors or descendants of a job or an artifact"
    ref: str = argument("A job id, an artifact URI, or a job:/artifact: node.")
    direction: str = choice(("up", "down"), "up: ancestors; down: descendants.", "up", cli="--down", switch="down",
                            switch_help="Descendants instead of ancestors.")  # fmt: skip
    depth: int = number(10, DEPTH, "Levels to walk.")
    stop_at: Mapping[str, str] = pairs("Do not go past jobs with this provenance.")
    containment: bool = flag("Follow parent jobs and workflows too, not only used/produced.")


@dataclass(frozen=True)
class FindJobs(Question):
    ROUTE = "/jobs"
    SUMMARY = "Jobs matching every where-group (ATTR OP VALUE | …)"
    where: tuple[str, ...] = argument(_WHERE, "many", cli="--where")
    limit: int = number(1000, ROWS, "At most this many.")


@dataclass(frozen=True)
class FindArtifacts(FindJobs):
    ROUTE = "/artifacts"
    SUMMARY = "Artifacts matching every where-group, each with its producers, consumers and annotations"


@dataclass(frozen=True)
class Outputs(Question):
    ROUTE = "/lineage/outputs"
    SUMMARY = "Outputs of the jobs that have an ancestor job matching a query"
    where: tuple[str, ...] = argument('The jobs: "ATTR OP VALUE | …" (groups AND).', "many", cli="--where")
    ancestor: tuple[str, ...] = argument("An ancestor job they must have: groups as --where.", "many", cli="--ancestor")
    depth: int = number(20, DEPTH, "Levels to walk.")


@dataclass(frozen=True)
class GroupJobs(Question):
    ROUTE = "/job-groups"
    SUMMARY = "Jobs grouped by provenance keys or job columns, counted per status"
    keys: tuple[str, ...] = argument('Keys, e.g. "param.band", "sys.host", "job.kind".', "many", http="key",
                                     metavar="KEY...")  # fmt: skip
    where: tuple[str, ...] = many("Only jobs matching this group: " + _WHERE)
    limit: int = number(1000, ROWS, "Groups (the largest first).")


@dataclass(frozen=True)
class RunsTable(Question):
    ROUTE = "/runs"
    SUMMARY = "Runs side by side: status, members, chosen parameters and annotations"
    run_ids: tuple[str, ...] = argument("Run ids.", "many", http="run", metavar="RUN...")
    parameters: tuple[str, ...] = many("A parameter to show (model or param.model).", http="param", cli="--param")
    annotations: tuple[str, ...] = many("An annotation key to show.", http="annotation", cli="--annotation")


@dataclass(frozen=True)
class CompareRuns(Question):
    ROUTE = "/compare-runs"
    SUMMARY = "How two runs differ: programs, parameters, inputs, outputs, structure"
    run_a: str = argument("A run id.", http="a")
    run_b: str = argument("Another run id.", http="b")


def _naming(name: str, route: str, summary: str, *field: str) -> type[Question]:
    """A question whose only parameter (if any) names the thing asked about: ``field`` is (name, help)."""
    fields = [(field[0], str, argument(field[1]))] if field else []
    namespace = {"ROUTE": route, "SUMMARY": summary, "__module__": __name__}
    made: type[Question] = dataclasses.make_dataclass(name, fields, bases=(Question,), frozen=True, namespace=namespace)
    return made


# Ids may hold "/" (workflow tools name jobs run/node): they are path parameters that span segments, and the
# resources route comes before the job's so that ".../resources" is not read as part of an id.
Resources = _naming("Resources", "/jobs/{job_id:path}/resources", "A job's resource samples in time order",
                    "job_id", "A job id.")  # fmt: skip
Job = _naming("Job", "/jobs/{job_id:path}", "Everything about one job", "job_id", "A job id.")
Run = _naming("Run", "/runs/{run_id:path}", "A run and its members: program, parameters, status, artifacts",
              "run_id", "A run id.")  # fmt: skip
Artifact = _naming("Artifact", "/artifact", "One artifact: producers, consumers, revisions, annotations", "uri",
                   "The artifact's URI.")  # fmt: skip
Status = _naming("Status", "/status", "Jobs by status")
Metrics = _naming("Metrics", "/metrics", "Every metric with points: unit, points, buckets, newest point")


QUESTIONS: tuple[type[Question], ...] = (
    Metrics, Series, Bucket, Compare, Regressions, Check, Lineage, Outputs, FindJobs, FindArtifacts, Resources,
    Job, Artifact, GroupJobs, RunsTable, Run, CompareRuns, Status,
)  # fmt: skip
"""Every question, in the order the HTTP API declares their routes (a route that is a prefix of another comes
after it)."""
