"""Slurm accounting (``sacct --json``, data_parser v0.0.40 and later) as jobs.

Each record of ``jobs`` is one attempt of one job. Its job id is ``slurm-<cluster>-<job_id>``, or for an array
task ``slurm-<cluster>-<array job_id>_<task_id>`` (its parent is ``slurm-<cluster>-<array job_id>``). A requeued
job's attempts (``sacct --duplicates`` lists each; ``restart_cnt`` counts requeues) are the job's attempts
``restart_cnt + 1``, in the order they started.

Per attempt: submitted at ``time/submission`` (kind ``hpc``, the user as submitter, ``slurm_*`` scheduler ids,
the cluster as machine, ``required/CPUs`` and ``allocation_nodes`` as requested), started at ``time/start`` on
the first of ``nodes`` in ``working_directory``, a step per entry of ``steps`` (named ``step/name``: ``batch``,
``extern``, ``0``...; state and times its own), and finished at ``time/end`` with the status of ``state/current``
(COMPLETED: succeeded; FAILED, TIMEOUT, NODE_FAIL, BOOT_FAIL, DEADLINE, OUT_OF_MEMORY: failed; CANCELLED: aborted;
PREEMPTED, or the REQUEUED flag: preempted), the return code and signal of ``exit_code``, ``time/elapsed`` as
duration. A PENDING job is queued; a RUNNING one has no end yet. Provenance: ``slurm.partition``,
``slurm.account``, ``slurm.qos``, ``slurm.nodes``, ``slurm.cpus`` (allocated), ``slurm.mem_mb`` (allocated),
``slurm.state``. CPU time (``time/user``, ``time/system``) and MaxRSS (the largest ``mem`` of any step's
``tres/requested/max``, the per-task maximum sacct shows as MaxRSS, in bytes) are a resource sample at the end.

Every bad record is named (``jobs[3] (job 1234)``) and nothing of the file is imported then.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from jobprov.emitters.importers.send import BadInputError, Record, load_json
from jobprov.schemas.models import (
    JobFinished,
    JobStarted,
    JobStatusChanged,
    JobSubmitted,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
    StepStarted,
)

IMPORTER = "slurm"
_STATUS = {
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "NODE_FAIL": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "failed",
    "OUT_OF_MEMORY": "failed",
    "CANCELLED": "aborted",
    "PREEMPTED": "preempted",
}
_FIRST_NODE = re.compile(r"^([^,\[]+)(?:\[(\d+))?")


def _number(value: Any) -> int | None:
    """A plain number, or Slurm's ``{"set", "infinite", "number"}`` (None when not set or infinite)."""
    if isinstance(value, dict):
        if not value.get("set") or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _time(value: Any) -> datetime | None:
    seconds = _number(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds else None  # 0: never happened


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def first_node(nodes: str) -> str:
    """``node[01-04],gpu7`` -> ``node01``: the host a job's batch step ran on."""
    match = _FIRST_NODE.match(nodes or "")
    if not match:
        return ""
    return match.group(1) + (match.group(2) or "")


def _tres(items: Any, kind: str) -> int | None:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("type") == kind and isinstance(item.get("count"), int):
            return int(item["count"])
    return None


def _state(record: dict[str, Any]) -> list[str]:
    state = _get(record, "state/current")
    return [str(s) for s in state] if isinstance(state, list) else [str(state)] if state else []


def _ids(record: dict[str, Any], cluster: str) -> tuple[str, str | None, dict[str, str]]:
    """(job id, parent job id, scheduler ids)."""
    job = record["job_id"]
    ids = {"slurm_job_id": str(job), "slurm_cluster": cluster}
    array_job = _number(_get(record, "array/job_id"))
    task = _number(_get(record, "array/task_id"))
    if array_job and task is not None:
        ids.update(slurm_array_job_id=str(array_job), slurm_array_task_id=str(task))
        return f"slurm-{cluster}-{array_job}_{task}", f"slurm-{cluster}-{array_job}", ids
    return f"slurm-{cluster}-{job}", None, ids


def _steps(record: dict[str, Any], job_id: str, attempt: int, where: str, problems: list[str]) -> list[Record]:
    out: list[Record] = []
    for i, step in enumerate(record.get("steps") or []):
        name = _get(step, "step/name") if isinstance(step, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(f"{where} steps[{i}]: no step/name")
            continue
        key = f"attempt {attempt} step {_get(step, 'step/id') or name}"
        start, end = _time(_get(step, "time/start")), _time(_get(step, "time/end"))
        if start is not None:
            out.append(Record(job_id, StepStarted(name=name), start, f"{key} started", attempt))
        states = [str(s) for s in step.get("state") or []]
        status = _STATUS.get(states[0] if states else "")
        if end is not None and status is not None:
            finished = StepFinished(name=name, status="failed" if status == "preempted" else status)
            out.append(Record(job_id, finished, end, f"{key} finished", attempt))
    return out


def attempt_records(record: dict[str, Any], where: str, attempt: int, problems: list[str]) -> list[Record]:
    cluster = str(record.get("cluster") or "cluster")
    job_id, parent, scheduler_ids = _ids(record, cluster)
    submitted_at = _time(_get(record, "time/submission"))
    if submitted_at is None:
        problems.append(f"{where}: no time/submission")
        return []
    state = _state(record)
    if not state:
        problems.append(f"{where}: no state/current")
        return []
    submitted = JobSubmitted(
        name=str(record.get("name") or record["job_id"]),
        kind="hpc",
        parent_job_id=parent,
        submitter=str(record["user"]) if record.get("user") else None,
        scheduler_ids=scheduler_ids,
        machine=cluster,
        requested_nodes=_number(record.get("allocation_nodes")) or None,
        requested_processes=_number(_get(record, "required/CPUs")) or None,
    )
    records = [Record(job_id, submitted, submitted_at, f"attempt {attempt} submitted", attempt)]
    started_at, ended_at = _time(_get(record, "time/start")), _time(_get(record, "time/end"))
    if "PENDING" in state and "REQUEUED" not in state:
        queued = JobStatusChanged(status="queued", reason=_get(record, "state/reason") or None)
        records.append(Record(job_id, queued, submitted_at, f"attempt {attempt} queued", attempt))
    nodes = str(record.get("nodes") or "")
    allocated = _get(record, "tres/allocated")
    values = {
        "slurm.partition": str(record.get("partition") or ""),
        "slurm.account": str(record.get("account") or ""),
        "slurm.qos": str(record.get("qos") or ""),
        "slurm.nodes": "" if nodes == "None assigned" else nodes,
        "slurm.state": " ".join(state),
    }
    for key, kind in (("slurm.cpus", "cpu"), ("slurm.mem_mb", "mem")):
        count = _tres(allocated, kind)
        if count is not None:
            values[key] = str(count)
    provenance_at = started_at or submitted_at
    records.append(
        Record(job_id, ProvenanceDeclared(values=values), provenance_at, f"attempt {attempt} provenance", attempt)
    )
    if started_at is not None:
        host = first_node(nodes) if nodes != "None assigned" else ""
        started = JobStarted(
            host=host,
            os="",
            kernel="",
            cwd=str(record.get("working_directory") or ""),
            command_line=[str(record["submit_line"])] if record.get("submit_line") else [],
        )
        records.append(Record(job_id, started, started_at, f"attempt {attempt} started", attempt))
        records += _steps(record, job_id, attempt, where, problems)
    status = "preempted" if "REQUEUED" in state else _STATUS.get(state[0])
    if status is not None and ended_at is not None:
        peak = max(
            (
                _tres(_get(s, "tres/requested/max"), "mem") or 0
                for s in record.get("steps") or []
                if isinstance(s, dict)
            ),
            default=0,
        )
        user = _number(_get(record, "time/user/seconds")) or 0
        system = _number(_get(record, "time/system/seconds")) or 0
        sample = ResourceSample(
            cpu_user_s=float(user), cpu_system_s=float(system), rss_bytes=peak, peak_rss_bytes=peak, threads=0
        )
        if started_at is not None:  # a job cancelled while pending used nothing
            records.append(Record(job_id, sample, ended_at, f"attempt {attempt} resources", attempt))
        code = _number(_get(record, "exit_code/return_code"))
        signal = _number(_get(record, "exit_code/signal/id"))
        elapsed = _number(_get(record, "time/elapsed"))
        finished = JobFinished(
            status=status,
            exit_code=code,
            signal=signal or None,
            duration_ms=None if elapsed is None else elapsed * 1000,
        )
        records.append(Record(job_id, finished, ended_at, f"attempt {attempt} finished", attempt))
    return records


def read_sacct_json(data: bytes, source: str) -> list[Record]:
    """The records of a ``sacct --json`` document (see the module docstring)."""
    doc = load_json(data, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise BadInputError(source, ["not sacct --json output: no 'jobs' list"])
    return read_jobs(doc["jobs"], source, [f"jobs[{i}]" for i in range(len(doc["jobs"]))])


def read_jobs(jobs: list[Any], source: str, places: list[str], problems: list[str] | None = None) -> list[Record]:
    """The records of job records in ``sacct --json``'s shape (other forms are first put in that shape), each
    named in errors by its place in ``places`` (``jobs[3]``, ``line 7``); all or nothing."""
    problems = list(problems or [])
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, record in enumerate(jobs):
        if not isinstance(record, dict) or not isinstance(record.get("job_id"), int):
            problems.append(f"{places[i]}: not a job record (no numeric job_id)")
            continue
        groups[(record.get("cluster"), record["job_id"])].append((i, record))
    records: list[Record] = []
    for attempts in groups.values():
        attempts.sort(key=lambda item: (_number(_get(item[1], "time/start")) or 0, item[0]))
        previous = 0
        for i, record in attempts:
            restarts = _number(record.get("restart_cnt")) or 0
            attempt = max(restarts + 1, previous + 1)
            previous = attempt
            records += attempt_records(record, f"{places[i]} (job {record['job_id']})", attempt, problems)
    if problems:
        raise BadInputError(source, problems)
    return records
