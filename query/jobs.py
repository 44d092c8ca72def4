"""Everything about one job: state, attempts, steps, resources, provenance, annotations, lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobprov.errors import UnknownNameError
from jobprov.query.store import Store, to_utc
from jobprov.stream_processors.provenance import namespace_of, qualified

_JOB_COLUMNS = (
    "job_id, name, kind, status, attempts, submitted_at, started_at, finished_at, last_event_at, exit_code, "
    "signal, exception_type, exception_message, host, duration_ms, cpu_user_s, cpu_system_s, peak_rss_bytes, "
    "io_read_bytes, io_write_bytes, parent_job_id, workflow_id, dag_node, submitter, scheduler_ids, "
    "attempt_statuses, anomalies, event_count"
)


def _record(columns: str, row: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in columns.split(",")]
    out = dict(zip(names, row, strict=True))
    for key, value in out.items():
        if hasattr(value, "tzinfo"):
            out[key] = to_utc(value)
    return out


_ATTEMPT_COLUMNS = (
    "attempt, status, superseded, host, submitted_at, started_at, finished_at, duration_ms, exit_code, signal, "
    "exception_type, exception_message, cpu_user_s, cpu_system_s, peak_rss_bytes, io_read_bytes, io_write_bytes, "
    "caveats"
)


def attempts(store: Store, job_id: str) -> list[dict[str, Any]]:
    """A job's attempts in order, each with its own outcome: a failed attempt stays ``failed`` (with its exit
    code, signal and exception) after a successful retry, and ``superseded`` says a later attempt exists.
    ``duration_ms`` is the attempt's run time, from its start to its end."""
    return [
        _record(_ATTEMPT_COLUMNS, r)
        for r in store.rows(
            f"SELECT {_ATTEMPT_COLUMNS} FROM {{db}}.attempts FINAL WHERE job_id = {{job:String}} ORDER BY attempt",
            job=job_id,
        )
    ]


def wall_time_ms(started_at: datetime | None, finished_at: datetime | None) -> int | None:
    """The job's wall time: from its first attempt's start to its last attempt's end (retries and the waits
    between them included); each attempt's own run time is its ``duration_ms``."""
    if started_at is None or finished_at is None:
        return None
    return round((finished_at - started_at).total_seconds() * 1000)


def job_detail(store: Store, job_id: str) -> dict[str, Any]:
    """Everything about one job. Of its times: ``wall_time_ms`` spans every attempt (first start to last end),
    ``last_attempt_duration_ms`` (also ``duration_ms``, its older name) the last attempt only; ``attempt_details``
    has each attempt's."""
    rows = store.rows(f"SELECT {_JOB_COLUMNS} FROM {{db}}.jobs FINAL WHERE job_id = {{job:String}}", job=job_id)
    if not rows:
        raise UnknownNameError(f"no job {job_id!r}")
    detail = _record(_JOB_COLUMNS, rows[0])
    detail["wall_time_ms"] = wall_time_ms(detail["started_at"], detail["finished_at"])
    detail["last_attempt_duration_ms"] = detail["duration_ms"]
    detail["attempt_details"] = attempts(store, job_id)
    detail["anomalies"] = [*detail["anomalies"], *reused_id(store, job_id)]
    provenance = store.rows("SELECT values FROM {db}.provenance FINAL WHERE job_id = {job:String}", job=job_id)
    detail["provenance"] = dict(provenance[0][0]) if provenance else {}
    # Each key's namespace (parameter, context, collected) and its query name in it (param.band, ctx.git.commit).
    detail["provenance_namespaces"] = {k: namespace_of(k) for k in detail["provenance"]}
    detail["provenance_names"] = {k: qualified(k) for k in detail["provenance"]}
    step_columns = "attempt, name, step_attempt, status, started_at, finished_at, exception_type, caveats"
    detail["steps"] = [
        _record(step_columns, r)
        for r in store.rows(
            f"SELECT {step_columns} FROM {{db}}.steps FINAL WHERE job_id = {{job:String}} "
            "ORDER BY attempt, started_at, name",
            job=job_id,
        )
    ]
    annotation_columns = "key_name, value, author, time, job_id"
    detail["annotations"] = [
        _record(annotation_columns, r)
        for r in store.rows(
            f"SELECT {annotation_columns} FROM {{db}}.annotations FINAL "
            "WHERE target_type = 'job' AND target = {job:String} ORDER BY time",
            job=job_id,
        )
    ]
    edge_columns = "src, dst, relation, role, checksum"
    node = f"job:{job_id}"
    detail["lineage"] = [
        _record(edge_columns, r)
        for r in store.rows(
            f"SELECT {edge_columns} FROM {{db}}.lineage FINAL WHERE src = {{node:String}} OR dst = {{node:String}} "
            "ORDER BY relation, src, dst",
            node=node,
        )
    ]
    peak = store.rows(
        "SELECT max(peak_rss_bytes), max(cpu_user_s + cpu_system_s), count() FROM {db}.resources FINAL "
        "WHERE job_id = {job:String}",
        job=job_id,
    )[0]
    detail["resource_samples"] = {"count": peak[2], "max_peak_rss_bytes": peak[0], "max_cpu_s": peak[1]}
    return detail


def reused_id(store: Store, job_id: str) -> list[str]:
    """Runs that shared this job id: an attempt started more than once (a job re-run with the same id, not
    as a retry). The fold keeps one start per attempt and adds up everything else, so each such run's metrics,
    samples and steps are in the job; say so. Read from the events table (keyed by job id: a short read)."""
    rows = store.rows(
        "SELECT attempt, count(), uniqExact(producer_instance) FROM {db}.events FINAL "
        "WHERE job_id = {job:String} AND event_type = 'JobStarted' GROUP BY attempt HAVING count() > 1 "
        "ORDER BY attempt",
        job=job_id,
    )
    return [
        f"attempt {attempt}: started {starts} times (by {emitters} emitters): the job id was reused, and the "
        "job holds every run's metrics; give each run its own id, or a new attempt number for a retry"
        for attempt, starts, emitters in rows
    ]


def status_counts(store: Store) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in store.rows("SELECT status, count() FROM {db}.jobs FINAL GROUP BY status")}


_RESOURCE_COLUMNS = "time, attempt, cpu_user_s, cpu_system_s, rss_bytes, peak_rss_bytes, threads, processes"


def resource_samples(store: Store, job_id: str, limit: int = 2000) -> list[dict[str, Any]]:
    """A job's resource samples in time order (the first ``limit``)."""
    return [
        _record(_RESOURCE_COLUMNS, r)
        for r in store.rows(
            f"SELECT {_RESOURCE_COLUMNS} FROM {{db}}.resources FINAL WHERE job_id = {{job:String}} "
            "ORDER BY time LIMIT {limit:UInt32}",
            job=job_id,
            limit=limit,
        )
    ]
