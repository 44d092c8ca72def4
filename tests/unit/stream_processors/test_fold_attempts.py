"""Provenance is seen per attempt: a retry elsewhere does not rewrite where the first attempt ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobprov.schemas.models import Event, JobFinished, JobStarted, JobSubmitted, MetricMeasured, Producer
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.records import MetricPoint, materialize

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PRODUCER = Producer("test", "0", "p1")


def _event(n: int, payload: object, attempt: int) -> Event:
    t = T0 + timedelta(seconds=n)
    return Event(f"e{n:03d}", "job", type(payload).__name__, t, t, PRODUCER, n, attempt, payload=payload)


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
