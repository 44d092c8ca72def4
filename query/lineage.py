"""Lineage: what a job or artifact came from, and what came of it.

Nodes are ``job:<id>``, ``artifact:<uri>`` and ``workflow:<id>``; edges are ``produced`` (job → artifact),
``used`` (artifact → job), ``parent`` (job → child job) and ``member`` (workflow → job). :func:`ancestors`
walks edges backwards, :func:`descendants` forwards, breadth first, one query per level, up to ``depth``
levels, optionally not expanding past jobs whose provenance matches ``stop_at`` (those jobs are included).
The walk follows data flow (``used`` and ``produced``) unless ``containment`` is asked for, which adds
``parent`` and ``member``: a job's parent run or workflow is not what its outputs were made from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobprov.errors import QueryError
from jobprov.query.limits import DEPTH, ROWS
from jobprov.query.names import stored_key
from jobprov.query.store import Store

DATAFLOW = ("used", "produced")
CONTAINMENT = ("parent", "member")
MAX_NODES = 100_000


@dataclass(frozen=True)
class Step:
    node: str  # the node reached
    via: str  # the relation of the edge that reached it
    origin: str  # the node it was reached from
    depth: int


def node_of(ref: str) -> str:
    """``job:<id>``/``artifact:<uri>`` as given; a bare value is a job id unless it looks like a URI."""
    if ref.startswith(("job:", "artifact:", "workflow:")):
        return ref
    return f"artifact:{ref}" if "://" in ref else f"job:{ref}"


def _stopping_jobs(store: Store, jobs: list[str], stop_at: Mapping[str, str]) -> set[str]:
    if not jobs or not stop_at:
        return set()
    params: dict[str, object] = {"ids": [j.removeprefix("job:") for j in jobs]}
    conditions = []
    for i, (key, value) in enumerate(sorted(stop_at.items())):
        conditions.append(f"values[{{k{i}:String}}] = {{v{i}:String}}")
        params[f"k{i}"], params[f"v{i}"] = stored_key(key), value
    where = " AND ".join(["job_id IN {ids:Array(String)}", *conditions])
    rows = store.rows(f"SELECT job_id FROM {{db}}.provenance FINAL WHERE {where}", **params)
    return {f"job:{r[0]}" for r in rows}


def _walk(
    store: Store, start: str, depth: int, stop_at: Mapping[str, str] | None, backwards: bool, containment: bool
) -> list[Step]:
    DEPTH.check("depth", depth)
    near, far = ("dst", "src") if backwards else ("src", "dst")
    seen = {start}
    frontier = [start]
    steps: list[Step] = []
    for level in range(1, depth + 1):
        if not frontier:
            break
        # A level costs about one table read's fixed time, so the query asks only for the rows: no FINAL (edges
        # are never deleted, and versions of an edge share its src, dst and relation) and no DISTINCT or ORDER
        # BY, done here on the few rows instead (same order: by origin, node, relation).
        rows = store.rows(
            f"SELECT {near}, {far}, relation FROM {{db}}.lineage WHERE {near} IN {{frontier:Array(String)}} "
            "AND relation IN {relations:Array(String)}",
            frontier=frontier,
            relations=[*DATAFLOW, *CONTAINMENT] if containment else list(DATAFLOW),
        )
        reached: list[str] = []
        for origin, node, relation in sorted(set(rows)):
            if node in seen:
                continue
            seen.add(node)
            steps.append(Step(node, relation, origin, level))
            reached.append(node)
        if len(seen) > MAX_NODES:
            raise QueryError(f"more than {MAX_NODES} nodes: narrow the query (depth, stop_at)")
        stops = _stopping_jobs(store, [n for n in reached if n.startswith("job:")], stop_at or {})
        frontier = [n for n in reached if n not in stops]
    return steps


def ancestors(
    store: Store, ref: str, depth: int = 10, stop_at: Mapping[str, str] | None = None, containment: bool = False
) -> list[Step]:
    """Everything ``ref`` (a job or an artifact) came from, nearest first (``containment``: parents and
    workflows too)."""
    return _walk(store, node_of(ref), depth, stop_at, backwards=True, containment=containment)


def descendants(
    store: Store, ref: str, depth: int = 10, stop_at: Mapping[str, str] | None = None, containment: bool = False
) -> list[Step]:
    """Everything that came of ``ref``, nearest first (``containment``: child jobs and members too)."""
    return _walk(store, node_of(ref), depth, stop_at, backwards=False, containment=containment)


def producers(store: Store, uri: str) -> list[str]:
    """The jobs that produced an artifact (usually one)."""
    rows = store.rows(
        "SELECT DISTINCT job_id FROM {db}.lineage FINAL WHERE dst = {node:String} AND relation = 'produced' "
        "ORDER BY job_id",
        node=f"artifact:{uri}",
    )
    return [r[0] for r in rows]


def outputs_preceded_by(
    store: Store, jobs_query: Sequence[str], ancestor_query: Sequence[str], depth: int = 20
) -> dict[str, list[str]]:
    """For every job matching ``jobs_query`` that has, directly or not, an ancestor job matching
    ``ancestor_query``: the artifacts it produced. E.g. the outputs of every softmean preceded by an
    align_warp run with model 12: ``(["job.name = softmean"], ["job.name = align_warp", "prov.model = 12"])``."""
    from jobprov.query.attributes import find_jobs

    wanted = {f"job:{j}" for j in find_jobs(store, ancestor_query, limit=int(ROWS.high))}
    result: dict[str, list[str]] = {}
    if not wanted:
        return result
    for job in find_jobs(store, jobs_query, limit=int(ROWS.high)):
        if any(step.node in wanted for step in ancestors(store, f"job:{job}", depth=depth)):
            produced = descendants(store, f"job:{job}", depth=1)
            result[job] = sorted(s.node.removeprefix("artifact:") for s in produced if s.via == "produced")
    return result
