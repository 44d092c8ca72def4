"""Provenance is seen per attempt: a retry elsewhere does not rewrite where the first attempt ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Annotation,
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
)
from jobprov.stream_processors.fold import FoldContext, attempt_snapshots, fold, snapshot
from jobprov.stream_processors.records import AnnotationRecord, MetricPoint, materialize

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PRODUCER = Producer("test", "0", "p1")


def _event(n: int, payload: object, attempt: int) -> Event:
    t = T0 + timedelta(seconds=n)
    return Event(f"e{n:03d}", "job", type(payload).__name__, ms(t), ms(t), PRODUCER, n, attempt, payload=payload)


def test_a_retry_on_another_host_keeps_the_first_attempts_buckets() -> None:
    events = [
        _event(1, JobSubmitted(name="j", kind="hpc"), 1),
        _event(2, JobStarted(host="nid001", os="l", kernel="k", cwd="/"), 1),
        _event(3, MetricMeasured(name="throughput", value=1.0, comparability_keys=["host"]), 1),
        _event(4, JobFinished(status="preempted"), 1),
        _event(5, JobStarted(host="nid002", os="l", kernel="k", cwd="/"), 2),
        _event(6, MetricMeasured(name="throughput", value=2.0, comparability_keys=["host"]), 2),
        _event(7, JobFinished(status="succeeded"), 2),
    ]
    for order in (events, list(reversed(events))):
        state, outputs = None, []
        for event in order:
            state, out = fold(state, event, FoldContext())
            outputs += out
        points = {r.event_id: r for r in materialize(outputs).values() if isinstance(r, MetricPoint)}
        assert points["e003"].bucket_keys == {"host": "nid001"}
        assert points["e006"].bucket_keys == {"host": "nid002"}
        assert state is not None
        assert snapshot(state).host == "nid002"
        assert snapshot(state).attempt_statuses == {"1": "retried", "2": "succeeded"}


def test_each_attempt_keeps_its_own_outcome_in_any_arrival_order() -> None:
    events = [
        _event(1, JobSubmitted(name="j", kind="hpc"), 1),
        _event(2, JobStarted(host="nid001", os="l", kernel="k", cwd="/"), 1),
        _event(4, JobFinished(status="failed", exit_code=3, signal=9), 1),
        _event(5, JobStarted(host="nid002", os="l", kernel="k", cwd="/"), 2),
        _event(7, JobFinished(status="succeeded", exit_code=0), 2),
    ]
    seen = []
    for order in (events, list(reversed(events))):
        state = None
        for event in order:
            state, _ = fold(state, event, FoldContext())
        assert state is not None
        job = snapshot(state)
        seen.append(attempt_snapshots(state, job))
    assert seen[0] == seen[1]
    first, second = seen[0]
    assert (first.status, first.superseded, first.host, first.exit_code, first.signal) == (
        "failed",
        True,
        "nid001",
        3,
        9,
    )
    assert (first.started_at_ms, first.finished_at_ms, first.duration_ms) == (_ms(2), _ms(4), 2000)
    assert (second.status, second.superseded, second.host, second.duration_ms) == ("succeeded", False, "nid002", 2000)


def test_annotations_on_artifacts_alone_make_no_job() -> None:
    note = Annotation(key="quality", value="bad", target_type="artifact", target="s3://b/x")
    state, outputs = fold(None, _event(1, note, 1), FoldContext())
    assert not state.is_job() and [r.target for r in outputs if isinstance(r, AnnotationRecord)] == ["s3://b/x"]
    state, _ = fold(state, _event(1, note, 1), FoldContext())  # a duplicate changes nothing
    assert not state.is_job()
    on_itself = Annotation(key="quality", value="good")
    assert fold(None, _event(1, on_itself, 1), FoldContext())[0].is_job()
    state, _ = fold(state, _event(2, JobSubmitted(name="j", kind="hpc"), 1), FoldContext())
    assert state.is_job()


def _ms(n: int) -> int:
    return int((T0 + timedelta(seconds=n)).timestamp() * 1000)
