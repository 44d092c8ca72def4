"""The fold's state follows a job's structure, not its event count: seq ranges instead of event ids, no metric
values (a late provenance change is a move the sink applies)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import Event, JobStarted, JobSubmitted, MetricMeasured, Producer, ResourceSample
from jobprov.stream_processors import snapshots
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.state import JobFoldState, SeqSet

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.integers(min_value=1, max_value=60), max_size=120))
def test_seq_set_is_a_set_of_numbers_kept_as_ranges(numbers: list[int]) -> None:
    seqs = SeqSet()
    seen: set[int] = set()
    for n in numbers:
        assert seqs.add(n) == (n not in seen)
        seen.add(n)
    assert seqs.count == len(seen)
    ranges = list(zip(seqs.starts, seqs.ends, strict=True))
    assert {n for start, end in ranges for n in range(start, end + 1)} == seen
    # Disjoint, sorted and not touching: the fewest ranges that hold the numbers.
    assert all(end + 1 < start for (_, end), (start, _) in itertools.pairwise(ranges))


def _job(events: int, *, seq_from: int = 1) -> list[Event]:
    producer = Producer("test", "0", "instance-1")
    out = []
    for n in range(events):
        t = T0 + timedelta(seconds=n)
        payload: object
        if n == 0:
            payload = JobSubmitted(name="long", kind="hpc")
        elif n == 1:
            payload = JobStarted(host="h", os="l", kernel="k", cwd="/")
        elif n % 2:
            payload = MetricMeasured(name="AM1", value=float(n))
        else:
            payload = ResourceSample(cpu_user_s=n, cpu_system_s=0.0, rss_bytes=1, peak_rss_bytes=1, threads=1)
        out.append(
            Event(f"e{n:07d}", "job", type(payload).__name__, ms(t), ms(t), producer, seq_from + n, 1, payload=payload)
        )
    return out


def _fold_all(events: list[Event]) -> JobFoldState:
    state = None
    for event in events:
        state, _ = fold(state, event, FoldContext())
    assert state is not None
    return state


def test_state_size_does_not_grow_with_the_events_of_a_job() -> None:
    small, large = _fold_all(_job(100)), _fold_all(_job(20_000))
    assert large.version == 20_000
    assert (large.seqs["instance-1"].starts, large.seqs["instance-1"].ends) == ([1], [20_000])
    assert len(pickle.dumps(large)) - len(pickle.dumps(small)) < 64  # a few wider integers, nothing per event


def test_a_redelivered_event_is_recognised_by_its_seq_after_thousands_more() -> None:
    events = _job(5_000)
    state = _fold_all(events)
    version = state.version
    for event in (events[0], events[2_500], events[-1]):
        _, out = fold(state, event, FoldContext())
        assert out == []
    assert state.version == version


def test_events_without_a_seq_are_deduplicated_by_id() -> None:
    events = _job(10, seq_from=-20)  # seq < 1: not usable, ids are remembered
    state = _fold_all(events + events)
    assert state.version == 10
    assert len(state.unsequenced) == 10 and not state.seqs


def test_a_snapshot_gives_back_the_same_state(realistic: Any, fold_events: Any, context: Any) -> None:
    state, _ = fold_events(realistic())
    back = snapshots.load(snapshots.dump(state))
    assert back == dataclasses.replace(state, _values={}, _buckets={})
    assert snapshot(back, None, context) == snapshot(state, None, context)
    assert back.provenance_values() == state.provenance_values()


def test_a_snapshot_builds_nothing_but_state() -> None:
    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, ("echo pwned",))

    with pytest.raises(snapshots.SnapshotError, match=r"may not build posix\.system|may not build os\.system"):
        snapshots.load(pickle.dumps(Evil()))
    with pytest.raises(snapshots.SnapshotError, match="not a job's state"):
        snapshots.load(pickle.dumps({"job_id": "x"}))
    with pytest.raises(snapshots.SnapshotError, match="unreadable"):
        snapshots.load(b"\x80\x05garbage")
