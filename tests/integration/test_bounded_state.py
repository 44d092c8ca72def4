"""Bounded, resumable worker state on the real engine: a job that leaves memory and comes back from the store gives
the outputs of a worker that never forgot it; a new worker resumes from the store's checkpoints; memory follows the
jobs running now."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobprov.schemas.models import (
    Annotation,
    Event,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    ResourceSample,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.sinks.clickhouse.state import ClickHouseStateStore
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.records import FOLD_VERSION, EventRecord, JobSnapshot
from jobprov.stream_processors.replay import verify
from tests.integration.processing import ListDeadLetters

T0 = datetime(2026, 6, 1, tzinfo=UTC)
LATENESS_MS = 60_000


def _event(job_id: str, instance: str, seq: int, at: datetime, payload: Any, attempt: int = 1) -> Event:
    producer = Producer("test", "0", instance)
    name = type(payload).__name__
    return Event(f"{instance}-{seq}", job_id, name, at, at, producer, seq, attempt, payload=payload)


def _log(jobs: int, running: set[int], seed: int = 3) -> list[Event]:
    """Jobs ten minutes apart in event time (so the watermark passes each a few jobs later), with what forgetting
    must survive: late annotations and a late provenance change of long-finished jobs, and redeliveries."""
    rng = random.Random(seed)
    log: list[Event] = []
    for j in range(jobs):
        job_id, instance = f"job-{j:03d}", f"job-{j:03d}/1"
        start = T0 + timedelta(minutes=10 * j)
        payloads: list[Any] = [
            JobSubmitted(name="nightly", kind="ci"),
            JobStarted(host=f"h{j % 3}", os="linux", kernel="6", cwd="/"),
            ProvenanceDeclared(values={"dataset": rng.choice(["hsc", "cfht"]), "band": "r"}),
            Heartbeat(interval_ms=30_000),
            ResourceSample(cpu_user_s=1.0, cpu_system_s=0.1, rss_bytes=10, peak_rss_bytes=10, threads=1),
            *[MetricMeasured(name="AM1", value=rng.gauss(10, 1), unit="mas") for _ in range(4)],
        ]
        if j not in running:
            payloads.append(JobFinished(status=rng.choice(["succeeded", "failed"]), exit_code=0))
        log += [_event(job_id, instance, n, start + timedelta(seconds=n), p) for n, p in enumerate(payloads, 1)]
    # Late news of old jobs: each comes when the watermark has long passed the job.
    for j in range(0, jobs - 5, 4):
        at = T0 + timedelta(minutes=10 * (j + 5))
        log.append(_event(f"job-{j:03d}", f"reviewer-{j}", 1, at, Annotation(key="quality", value="bad")))
    log.append(
        _event(
            "job-001", "job-001/late", 1, T0 + timedelta(minutes=200), ProvenanceDeclared(values={"dataset": "decam"})
        )
    )
    # Redeliveries of early events, interleaved late in the log.
    redelivered = rng.sample(log[: len(log) // 3], 25)
    return log + redelivered


def _batches(events: list[Event], size: int) -> Iterator[list[RawEvent]]:
    raw = [RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(events)]
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


@pytest.fixture
def databases(store: Any) -> Iterator[list[str]]:
    names = [f"{store.jobprov_database[:50]}_{suffix}" for suffix in ("a", "b")]
    for name in names:
        store.command(f"DROP DATABASE IF EXISTS {name}")
        migrate(store, Target(name))
    yield [store.jobprov_database, *names]
    for name in names:
        store.command(f"DROP DATABASE IF EXISTS {name}")


def _processor(client: Any, database: str, *, bounded: bool) -> Processor:
    return Processor(
        ClickHouseSink(client, database),
        ListDeadLetters(),
        FoldContext(),
        allowed_lateness_ms=LATENESS_MS,
        state_store=ClickHouseStateStore(client, database) if bounded else None,
    )


def test_forgetting_jobs_and_loading_them_back_changes_no_output(store: Any, databases: list[str]) -> None:
    forgetful_db, reference_db, _ = databases
    events = _log(jobs=40, running={37, 39})
    forgetful = _processor(store, forgetful_db, bounded=True)
    reference = _processor(store, reference_db, bounded=False)
    held: list[int] = []
    for batch in _batches(events, 9):
        forgetful.process_batch(batch)
        reference.process_batch(batch)
        held.append(len(forgetful.states))

    verification = verify(store, reference_db, forgetful_db)
    assert verification.clean, verification.differences
    assert len(reference.states) == 40
    assert max(held) < 15, "finished jobs left memory as the watermark passed them"
    # The running job stays (job-037 fell silent and is lost: it left); so do the jobs whose newest event is
    # within the allowed lateness.
    watermark = forgetful.watermark_ms
    assert watermark is not None
    within = {j for j, s in reference.states.items() if s.last_event_ms >= watermark}
    assert reference.status_of["job-037"] == "lost"
    assert set(forgetful.states) == {"job-039"} | within
    # Late news brought old jobs back from the store (their points moved after the late provenance).
    moved = store.query(
        f"SELECT count() FROM {forgetful_db}.metric_points FINAL "
        "WHERE job_id = 'job-001' AND is_deleted = 0 AND bucket_keys['dataset'] = 'decam'"
    ).result_rows[0][0]
    assert moved == 4


@pytest.mark.parametrize("snapshots", ["kept", "lost", "damaged"])
def test_a_new_worker_resumes_from_the_checkpoints(store: Any, databases: list[str], snapshots: str) -> None:
    """From the jobs' snapshots; and when there are none it can use (none, or damaged), from their stored events."""
    resumed_db, reference_db, _ = databases
    events = _log(jobs=30, running={20, 29})
    cut = len(events) // 2
    reference = _processor(store, reference_db, bounded=False)
    for batch in _batches(events, 11):
        reference.process_batch(batch)

    first = _processor(store, resumed_db, bounded=True)
    for batch in _batches(events[:cut], 11):
        first.process_batch(batch)
    held_at_cut = set(first.states)
    watermark_at_cut = first.watermark_ms
    del first  # a crash or a rebalance: only the store remains
    stored = store.query(f"SELECT count() FROM {resumed_db}.job_states FINAL").result_rows[0][0]
    assert stored >= len(held_at_cut), "every job held had a snapshot written with its records"
    if snapshots == "lost":
        store.command(f"TRUNCATE TABLE {resumed_db}.job_states")
    if snapshots == "damaged":  # newer rows that are no snapshot at all
        store.command(
            f"INSERT INTO {resumed_db}.job_states SELECT job_id, 'garbage', registry_version, state_version + 1, "
            f"fold_version FROM {resumed_db}.job_states FINAL"
        )

    second = _processor(store, resumed_db, bounded=True)
    assert second.resume("events", [0]) == len(held_at_cut)
    assert set(second.states) == held_at_cut, "the jobs the first worker held, and no others"
    assert second.watermark_ms == watermark_at_cut
    assert second.resume("events", [1]) == 0, "another partition's worker held nothing"
    for batch in _batches(events[cut:], 11):
        second.process_batch(batch)

    verification = verify(store, reference_db, resumed_db)
    assert verification.clean, verification.differences


def test_a_load_returns_the_snapshots_and_only_the_events_of_jobs_without_one(store: Any) -> None:
    db = store.jobprov_database
    sink = ClickHouseSink(store, db)
    sink.write([JobSnapshot("with", b"state-of-with", "r1", 3)])
    sink.write([EventRecord(f"{job}-{n}", job, "JobStarted", 0, 0, "p/0", "i", n, 1, f"{job} {n}".encode())
                for job in ("with", "without") for n in range(3)])  # fmt: skip
    sink.flush(30.0)
    found, events = ClickHouseStateStore(store, db).load(["with", "without", "unknown"])
    assert found == {"with": (FOLD_VERSION, "r1", b"state-of-with")}
    assert sorted(events) == [b"without 0", b"without 1", b"without 2"], "none of the events of a job with a snapshot"


@pytest.mark.parametrize("handed_off", [False, True])
def test_a_job_that_left_memory_before_its_snapshot_is_durable_comes_back_whole(
    store: Any, databases: list[str], handed_off: bool
) -> None:
    """The worker folds several batches per flush, and writes a flush while it folds the next: a job can leave
    memory and be named again before the store has its last snapshot. It comes back from memory, not from a store
    that does not know it yet."""
    forgetful_db, reference_db, _ = databases
    payloads: list[Any] = [
        JobSubmitted(name="nightly", kind="ci"),
        JobStarted(host="h", os="linux", kernel="6", cwd="/"),
        MetricMeasured(name="AM1", value=1.0, unit="mas"),
        JobFinished(status="succeeded", exit_code=0),
    ]
    done = [_event("x", "x/1", n, T0 + timedelta(seconds=n), p) for n, p in enumerate(payloads, 1)]
    later = T0 + timedelta(minutes=10)  # the watermark passes x: it leaves memory
    other = [_event("y", "y/1", 1, later, JobSubmitted(name="nightly", kind="ci"))]
    late = [_event("x", "reviewer", 1, later + timedelta(seconds=1), Annotation(key="quality", value="bad"))]
    batches = list(_batches(done + other + late, 1))
    first, second, third = batches[: len(done)], batches[len(done)], batches[len(done) + 1]
    forgetful = _processor(store, forgetful_db, bounded=True)
    reference = _processor(store, reference_db, bounded=False)
    for batch in batches:
        reference.process_batch(batch)
    for batch in [*first, second]:
        forgetful.fold_batch(batch)
    assert "x" not in forgetful.states, "x left memory"
    if handed_off:  # its snapshot is being written while the next batch folds
        handoff = forgetful.handoff()
        forgetful.fold_batch(third)
        handoff.write()
        handoff.done()
    else:  # its snapshot waits in the sink's buffer
        forgetful.fold_batch(third)
    forgetful.flush()
    verification = verify(store, reference_db, forgetful_db)
    assert verification.clean, verification.differences
    assert forgetful.states["x"].version == reference.states["x"].version


class _CutWriter:
    """The store's connection, cut (as by a killed worker) before its ``cut``-th insert; counts the inserts."""

    def __init__(self, client: Any, cut: int | None) -> None:
        self.client, self.cut, self.inserts = client, cut, 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.inserts == self.cut:
            raise RuntimeError("the worker was killed")
        self.inserts += 1
        return self.client.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_flush_cut_short_anywhere_then_redelivered_gives_the_uninterrupted_result(
    store: Any, databases: list[str]
) -> None:
    """Whatever prefix of a flush's inserts reached the store, a new worker that resumes from it and folds the
    redelivered events writes what an uninterrupted one did: nothing lost, nothing twice."""
    cut_db, reference_db, _ = databases
    events = _log(jobs=12, running={11})
    batches = list(_batches(events, 9))
    done, redelivered = batches[:6], batches[6:]  # flushed and committed; folded, then cut mid-flush
    reference = _processor(store, reference_db, bounded=False)
    for batch in batches:
        reference.process_batch(batch)
    probe = _CutWriter(store, None)
    counting = Processor(ClickHouseSink(store, cut_db, writer=probe), ListDeadLetters(), FoldContext(),
                         allowed_lateness_ms=LATENESS_MS, state_store=ClickHouseStateStore(store, cut_db))  # fmt: skip
    for batch in done:
        counting.process_batch(batch)
    before = probe.inserts
    for batch in redelivered[:3]:
        counting.fold_batch(batch)
    counting.flush()
    inserts = probe.inserts - before
    assert inserts >= 8, "the flush writes records, events and checkpoints"
    for cut in range(inserts):
        store.command(f"DROP DATABASE IF EXISTS {cut_db}")
        migrate(store, Target(cut_db))
        writer = _CutWriter(store, None)
        first = Processor(ClickHouseSink(store, cut_db, writer=writer), ListDeadLetters(), FoldContext(),
                          allowed_lateness_ms=LATENESS_MS, state_store=ClickHouseStateStore(store, cut_db))  # fmt: skip
        for batch in done:
            first.process_batch(batch)
        writer.cut = writer.inserts + cut
        for batch in redelivered[:3]:
            first.fold_batch(batch)
        with pytest.raises(Exception, match="killed"):
            first.flush()
        second = _processor(store, cut_db, bounded=True)
        second.resume("events", [0])
        for batch in redelivered:
            second.process_batch(batch)
        verification = verify(store, reference_db, cut_db)
        assert verification.clean, (cut, verification.differences)
