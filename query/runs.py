"""Runs and their members: a workflow or script run is a job (or a workflow id) whose members are its steps or
tasks, the jobs whose ``parent_job_id`` or ``workflow_id`` names it.

A member is described by what it did, not by its id: its program (the job's name), its place in the run
(``dag_node``, else the program and its rank among the run's members of that program, in start order), its
parameters (see ``stream_processors.provenance.namespace_of``), its status, and the artifacts it used (inputs)
and produced (outputs), each with its checksum. Two runs are compared member by member on that place, so the
answer speaks of programs, parameters, inputs, outputs and structure, never of job ids; a URI holding the run's
id is compared with the id replaced by ``{run}`` (runs usually write under a directory of their own).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from jobprov.errors import QueryError, UnknownNameError
from jobprov.query.names import stored_key
from jobprov.query.store import Store, to_utc
from jobprov.stream_processors.provenance import parameters

RUN_PLACEHOLDER = "{run}"


def members(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's members in start order, each with program, place, parameters, status, inputs and outputs."""
    rows = store.rows(
        "SELECT j.job_id, j.name, j.dag_node, j.status, j.started_at, p.values FROM {db}.jobs AS j FINAL "
        "LEFT JOIN (SELECT job_id, values FROM {db}.provenance FINAL) AS p ON p.job_id = j.job_id "
        "WHERE j.parent_job_id = {run:String} OR j.workflow_id = {run:String} "
        "ORDER BY j.started_at, j.job_id",
        run=run_id,
    )
    if not rows:
        known = store.rows("SELECT count() FROM {db}.jobs FINAL WHERE job_id = {run:String}", run=run_id)[0][0]
        raise UnknownNameError(f"no run {run_id!r}" if not known else f"job {run_id!r} has no members")
    ids = [r[0] for r in rows]
    edges: dict[str, dict[str, list[dict[str, Any]]]] = {job: {"inputs": [], "outputs": []} for job in ids}
    nodes = [f"job:{job}" for job in ids]
    for src, dst, relation, checksum, role in store.rows(
        "SELECT src, dst, relation, checksum, role FROM {db}.lineage FINAL "
        "WHERE relation IN ('used', 'produced') AND (dst IN {nodes:Array(String)} OR src IN {nodes:Array(String)}) "
        "ORDER BY relation, src, dst",
        nodes=nodes,
    ):
        job, artifact, side = (dst, src, "inputs") if relation == "used" else (src, dst, "outputs")
        if job.startswith("job:") and artifact.startswith("artifact:") and job[4:] in edges:
            entry = {"uri": artifact.removeprefix("artifact:"), "checksum": checksum, "role": role}
            edges[job[4:]][side].append(entry)
    ranks: Counter[str] = Counter()
    out = []
    for job_id, name, dag_node, status, started_at, values in rows:
        program = name or ""
        ranks[program] += 1
        out.append(
            {
                "job_id": job_id,
                "place": dag_node or f"{program}#{ranks[program]}",
                "program": name,
                "dag_node": dag_node,
                "status": status,
                "started_at": to_utc(started_at),
                "parameters": parameters(dict(values or {})),
                **edges[job_id],
            }
        )
    return out


def run(store: Store, run_id: str) -> dict[str, Any]:
    """A run: its own job's status (null when the run is only a workflow id) and its members."""
    own = store.rows("SELECT name, status FROM {db}.jobs FINAL WHERE job_id = {run:String}", run=run_id)
    return {
        "run": run_id,
        "name": own[0][0] if own else None,
        "status": own[0][1] if own else None,
        "members": members(store, run_id),
    }


def _uri(uri: str, run_id: str) -> str:
    """The URI with the run's id, where it stands alone (not inside a longer name), as ``{run}``."""
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(run_id)}(?![A-Za-z0-9])", RUN_PLACEHOLDER, uri)


def _artifacts(entries: list[dict[str, Any]], run_id: str) -> dict[str, str | None]:
    return {_uri(e["uri"], run_id): e["checksum"] for e in entries}


def _dataflow(members: list[dict[str, Any]], run_id: str) -> set[tuple[str, str]]:
    """(producer place, consumer place) for every artifact one member produced and another used."""
    producers = {_uri(o["uri"], run_id): m["place"] for m in members for o in m["outputs"]}
    return {
        (producers[_uri(i["uri"], run_id)], m["place"])
        for m in members
        for i in m["inputs"]
        if _uri(i["uri"], run_id) in producers
    }


def _diff(aspect: str, place: str, a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"aspect": aspect, "member": place, "item": key, "a": a.get(key), "b": b.get(key)}
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) or (key in a) != (key in b)
    ]


def compare_runs(store: Store, run_a: str, run_b: str) -> list[dict[str, Any]]:
    """How two runs differ, as rows ``{aspect, member, item, a, b}``. Aspects: ``structure`` (a member in one run
    only; dataflow between members), ``program`` (another program at the same place), ``parameter``, ``status``,
    ``input`` and ``output`` (an artifact in one run only, or its checksum differs; ``None``: absent)."""
    members_a = {m["place"]: m for m in members(store, run_a)}
    members_b = {m["place"]: m for m in members(store, run_b)}
    rows: list[dict[str, Any]] = []
    for place in sorted(set(members_a) | set(members_b)):
        a, b = members_a.get(place), members_b.get(place)
        if a is None or b is None:
            present = a or b
            assert present is not None
            rows.append({"aspect": "structure", "member": place, "item": "member",
                         "a": present["program"] if a else None, "b": present["program"] if b else None})  # fmt: skip
            continue
        if a["program"] != b["program"]:
            rows.append({"aspect": "program", "member": place, "item": "program", "a": a["program"],
                         "b": b["program"]})  # fmt: skip
        rows += _diff("parameter", place, a["parameters"], b["parameters"])
        rows += _diff("status", place, {"status": a["status"]}, {"status": b["status"]})
        rows += _diff("input", place, _artifacts(a["inputs"], run_a), _artifacts(b["inputs"], run_b))
        rows += _diff("output", place, _artifacts(a["outputs"], run_a), _artifacts(b["outputs"], run_b))
    flow_a, flow_b = _dataflow(list(members_a.values()), run_a), _dataflow(list(members_b.values()), run_b)
    for producer, consumer in sorted(flow_a ^ flow_b):
        edge = f"{producer} → {consumer}"
        rows.append({"aspect": "structure", "member": consumer, "item": f"dataflow {edge}",
                     "a": edge if (producer, consumer) in flow_a else None,
                     "b": edge if (producer, consumer) in flow_b else None})  # fmt: skip
    return rows


def runs_table(
    store: Store, run_ids: Sequence[str], parameters: Sequence[str] = (), annotations: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One row per run: its status, how many members, and for each chosen parameter the values its members (and
    the run's own job) declared, for each chosen annotation key the value on the run's job (or, failing that, on
    its members), e.g. Swift's ``compare_run(parameter="model", annotation="quality")``. Parameters are named as
    stored or as ``param.<key>``; values of several members are joined with ", " in sorted order."""
    if not run_ids:
        raise QueryError("runs: name at least one")
    keys = [stored_key(p) for p in parameters]
    rows = []
    for run_id in run_ids:
        found = run(store, run_id)
        jobs = [run_id, *(m["job_id"] for m in found["members"])]
        values = store.rows("SELECT values FROM {db}.provenance FINAL WHERE job_id IN {jobs:Array(String)}", jobs=jobs)
        notes = store.rows(
            "SELECT target, key_name, argMax(value, time) FROM {db}.annotations FINAL WHERE target_type = 'job' "
            "AND target IN {jobs:Array(String)} AND key_name IN {keys:Array(String)} GROUP BY target, key_name",
            jobs=jobs,
            keys=list(annotations),
        )
        row: dict[str, Any] = {"run": run_id, "status": found["status"], "members": len(found["members"])}
        for name, key in zip(parameters, keys, strict=True):
            declared = sorted({dict(v[0])[key] for v in values if key in dict(v[0])})
            row[name] = ", ".join(declared) if declared else None
        for key in annotations:
            own = [v for target, k, v in notes if k == key and target == run_id]
            members = sorted({v for target, k, v in notes if k == key and target != run_id})
            row[f"ann.{key}"] = own[0] if own else (", ".join(members) if members else None)
        rows.append(row)
    return rows
