"""A job's lifecycle, derived from the facts of all its attempts.

    submitted -> queued -> running -> (preempted -> retried)* -> succeeded | failed | aborted
    queued | running -> held -> (released) queued | running
    running -> lost        when nothing was heard for the timeout, measured against the watermark

The status is a function of the facts, not of the order events came in. Transitions that should not happen
are kept and flagged in ``anomalies`` (never dropped): a finish without a start, a start before the
submission, activity after the end, two different ends of one attempt, a retry after a success, gaps in an
emitter's sequence numbers.
"""

from __future__ import annotations

from jobprov.stream_processors.records import AttemptState, JobState
from jobprov.stream_processors.state import AttemptFacts, JobFoldState

TERMINAL = ("succeeded", "failed", "aborted")


def _attempt_status(facts: AttemptFacts) -> str:
    finish = facts.latest_finish()
    if finish is not None:
        return finish[1].status
    wait = max(facts.waits.values(), default=None)  # the latest scheduler-side state, by event time
    if facts.started is not None:
        # A hold after the start suspends the job until it is released.
        held = wait is not None and wait[1] == "held" and wait[0] > facts.started[0]
        return "held" if held else "running"
    if wait is not None:
        return "queued" if wait[1] == "released" else wait[1]
    if facts.submitted is not None:
        return "submitted"
    return "unknown"


def _anomalies(state: JobFoldState) -> list[str]:
    found: set[str] = set()
    for number, facts in state.attempts.items():
        finish = facts.latest_finish()
        statuses = {f.status for _, f in facts.finished.values()}
        if len(statuses) > 1:
            found.add(f"attempt {number}: conflicting ends {sorted(statuses)}")
        if finish is not None and facts.started is None:
            found.add(f"attempt {number}: finished without a start")
        if facts.started is not None and facts.submitted is not None and facts.started[0][0] < facts.submitted[0][0]:
            found.add(f"attempt {number}: started before it was submitted")
        if finish is not None and facts.last_activity_ms is not None and facts.last_activity_ms > finish[0][0]:
            found.add(f"attempt {number}: activity after the end")
        if finish is not None and finish[1].status == "succeeded" and any(n > number for n in state.attempts):
            found.add(f"attempt {number}: retried after it succeeded")
    for producer, seqs in sorted(state.seqs.items()):
        low, high = seqs.low, seqs.high
        missing = high - low + 1 - seqs.count
        if missing > 0:
            found.add(f"emitter {producer}: {missing} events missing between seq {low} and {high}")
    return sorted(found)


def _duration(facts: AttemptFacts) -> int | None:
    """An attempt's run time: as its end reports it, else from its start to its end."""
    finish = facts.latest_finish()
    if finish is None:
        return None
    if finish[1].duration_ms is not None:
        return finish[1].duration_ms
    return finish[0][0] - facts.started[0][0] if facts.started is not None else None


def derive_attempt_states(state: JobFoldState, job: JobState) -> list[AttemptState]:
    """Each attempt's own facts (``job``: the job's state record, whose ``lost`` the current attempt shares)."""
    numbers = sorted(state.attempts)
    caveats: dict[int, set[str]] = {}
    for (attempt, _, _), step in state.steps.items():
        if step.finished is not None and step.finished[1].caveats:
            caveats.setdefault(attempt, set()).update(step.finished[1].caveats)
    out = []
    for n in numbers:
        facts = state.attempts[n]
        finish = facts.latest_finish()
        end = finish[1] if finish else None
        status = _attempt_status(facts)
        if n == numbers[-1] and job.status == "lost":
            status = "lost"
        out.append(
            AttemptState(
                job_id=state.job_id,
                attempt=n,
                status=status,
                superseded=n != numbers[-1],
                host=facts.started[1].host if facts.started else None,
                submitted_at_ms=facts.submitted[0][0] if facts.submitted else None,
                started_at_ms=facts.started[0][0] if facts.started else None,
                finished_at_ms=finish[0][0] if finish else None,
                duration_ms=_duration(facts),
                exit_code=end.exit_code if end else None,
                signal=end.signal if end else None,
                exception_type=end.exception_type if end else None,
                exception_message=end.exception_message if end else None,
                cpu_user_s=facts.cpu_user_s,
                cpu_system_s=facts.cpu_system_s,
                peak_rss_bytes=facts.peak_rss_bytes,
                io_read_bytes=facts.io_read_bytes,
                io_write_bytes=facts.io_write_bytes,
                caveats=sorted(caveats.get(n, ())),
                state_version=state.version,
            )
        )
    return out


def derive_job_state(state: JobFoldState, watermark_ms: int | None, lost_after_ms: int) -> JobState:
    numbers = sorted(state.attempts)
    current_no = numbers[-1] if numbers else 1
    current = state.attempts.get(current_no, AttemptFacts())
    status = _attempt_status(current)
    if status == "running" and watermark_ms is not None:
        timeout = 3 * state.heartbeat_interval_ms if state.heartbeat_interval_ms else lost_after_ms
        if watermark_ms - state.last_event_ms > timeout:
            status = "lost"
    attempt_statuses = {}
    for n in numbers:
        s = _attempt_status(state.attempts[n])
        attempt_statuses[str(n)] = "retried" if n != current_no and s not in ("succeeded",) else s
    submitted = min((f.submitted for f in state.attempts.values() if f.submitted), default=None)
    started = min((f.started for f in state.attempts.values() if f.started), default=None)
    latest_started = current.started
    finish = current.latest_finish()
    finish_payload = finish[1] if finish else None
    duration = _duration(current)  # the last attempt's: the job's wall time is finished_at - started_at
    sub_payload = submitted[1] if submitted else None
    return JobState(
        job_id=state.job_id,
        name=sub_payload.name if sub_payload else None,
        kind=sub_payload.kind if sub_payload else None,
        status=status,
        attempts=len(numbers),
        submitted_at_ms=submitted[0][0] if submitted else None,
        started_at_ms=started[0][0] if started else None,
        finished_at_ms=finish[0][0] if finish else None,
        last_event_at_ms=state.last_event_ms,
        exit_code=finish_payload.exit_code if finish_payload else None,
        signal=finish_payload.signal if finish_payload else None,
        exception_type=finish_payload.exception_type if finish_payload else None,
        exception_message=finish_payload.exception_message if finish_payload else None,
        host=latest_started[1].host if latest_started else None,
        duration_ms=duration,
        cpu_user_s=_sum(f.cpu_user_s for f in state.attempts.values()),
        cpu_system_s=_sum(f.cpu_system_s for f in state.attempts.values()),
        peak_rss_bytes=max((f.peak_rss_bytes for f in state.attempts.values() if f.peak_rss_bytes), default=None),
        io_read_bytes=_sum_int(f.io_read_bytes for f in state.attempts.values()),
        io_write_bytes=_sum_int(f.io_write_bytes for f in state.attempts.values()),
        parent_job_id=sub_payload.parent_job_id if sub_payload else None,
        workflow_id=sub_payload.workflow_id if sub_payload else None,
        dag_node=sub_payload.dag_node if sub_payload else None,
        submitter=sub_payload.submitter if sub_payload else None,
        scheduler_ids=dict(sub_payload.scheduler_ids) if sub_payload else {},
        attempt_statuses=attempt_statuses,
        anomalies=_anomalies(state),
        event_count=state.version,
        state_version=state.version,
    )


def _sum(values: object) -> float | None:
    known = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return round(sum(known), 3) if known else None


def _sum_int(values: object) -> int | None:
    known = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return sum(known) if known else None
