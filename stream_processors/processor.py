"""The stream processor's core, independent of the consumer loop: decode, fold, hand off, remember little.

One :class:`Processor` holds the fold states of the jobs of its partitions that are active now. For each batch
it decodes every message (undecodable ones go to dead letters with the reason and source position), folds,
snapshots every job the batch touched and writes the records to the sink (:meth:`fold_batch`); :meth:`flush`
makes them durable, or :meth:`handoff` detaches them to be written by another thread while the next batches fold.
Only once they are durable does the caller commit the batch's offsets, so at-least-once delivery plus idempotent
records give exactly-once results.

Bounded, resumable state (with a :class:`~jobprov.stream_processors.checkpoint.StateStore`):

- A job leaves memory once it is no longer running and its newest event is older than the watermark (the newest
  event time seen, less the allowed lateness). An event for a job not in memory first brings the job back from
  its snapshot (or, without a usable one, by folding its stored events again), so the outputs are those of a
  processor that never forgot it. Until the flush with its last snapshot is durable, a job that left is kept
  aside and comes back from there: the store does not know it yet.
- Checkpointed with the records of each flush: the state of every job changed since the last flush
  (:class:`JobSnapshot`), which jobs are in memory per partition (:class:`ResidentJob`), and each partition's
  newest event time (:class:`PartitionWatermark`); :meth:`resume` loads a partition's jobs from them when the
  partition is assigned.

Without a state store (the derived-records topic sink) nothing leaves memory, and the caller rebuilds a
partition's state from the log through :meth:`rebuild` (no outputs) before resuming. Not thread-safe: one
consumer loop drives it, rebalance callbacks included.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from jobprov.errors import SerializationError, SinkError, UnknownSchemaError
from jobprov.schemas.models import Event
from jobprov.schemas.wire import decode_event
from jobprov.sinks.base import Sink, SinkBackpressure, SinkBatch
from jobprov.stream_processors import snapshots
from jobprov.stream_processors.checkpoint import StateStore
from jobprov.stream_processors.dead_letters import DeadLetters
from jobprov.stream_processors.fold import FoldContext, attempt_snapshots, fold, snapshot
from jobprov.stream_processors.metrics import ProcessorMetrics
from jobprov.stream_processors.records import (
    FOLD_VERSION,
    EventRecord,
    JobSnapshot,
    PartitionWatermark,
    Record,
    ResidentJob,
)
from jobprov.stream_processors.state import JobFoldState

log = logging.getLogger("jobprov.processor")

# Statuses that change with the watermark alone (running -> lost): such a job stays in memory to be watched.
_WATCHED = frozenset({"running"})
NOT_A_JOB = "not_a_job"
"""The in-memory status of a key whose events only annotated something else (no job row is written for it)."""


FULL_PASS_EVERY = 10
"""Retired batches (see :meth:`CollectorPause.retire`) between two full passes of the cyclic collector."""


class CollectorPause:
    """No cyclic garbage collection while a batch is folded and until its records are flushed; one
    young-generation pass after the flush (:meth:`release`), or none for a batch handed off (:meth:`retire`).

    A batch allocates a few objects per event (decoded events, fold states, records, columns) that live until
    the flush, and almost none of them are in cycles: reference counting frees them. With the collector on, its
    passes every 700 allocations re-scan them all, and over the young objects promoted since; replaying 200k
    events (benchmarks/replay.py) spent a third of its time there: 29.5k events/s with the collector, 44.2k
    without, 38.7k with a 50,000-allocation threshold. Paused per batch only, the pass after each of the worker's
    batches still re-scanned the records waiting for the flush (5% of `jobprov up`'s worker, py-spy). Cycles
    made meanwhile wait for the flush, so what this holds back is bounded by one flush's worth of events.
    """

    def __init__(self) -> None:
        self._held = False
        self._retired = 0

    def hold(self) -> None:
        if not self._held and gc.isenabled():
            gc.disable()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            gc.enable()
            gc.collect(0)

    def retire(self) -> None:
        """:meth:`release` for a batch whose records are handed off, still to be written: what the batch left
        alive goes to the oldest generation unscanned (``gc.freeze`` then ``gc.unfreeze``, two list splices), so
        the pass does not go over the records waiting for their write; reference counting frees them once
        written. Cycles made meanwhile wait for a full pass, every ``FULL_PASS_EVERY`` retires (the sink makes
        none: it empties its insert contexts). benchmarks/replay.py, 200k events: 61.6k-63.8k events/s flushing after
        each fold, 63.2k-64.7k writing beside the next with this; beside it with a pass at each handoff, no gain."""
        if self._held:
            self._held = False
            self._retired += 1
            if self._retired % FULL_PASS_EVERY == 0:
                gc.enable()
                gc.collect()
                return
            gc.freeze()
            gc.unfreeze()
            gc.enable()


@contextlib.contextmanager
def batch_gc() -> Iterator[None]:
    """:class:`CollectorPause` around a block that allocates like a batch (reading one, in replay)."""
    pause = CollectorPause()
    pause.hold()
    try:
        yield
    finally:
        pause.release()


class RawEvent(NamedTuple):
    """A message as consumed: its bytes and where it came from. A tuple: one is made per message, and a frozen
    dataclass's constructor cost a tenth of the worker's time."""

    value: bytes
    topic: str
    partition: int
    offset: int


class Handoff:
    """A flush's records, detached from the sink: :meth:`write` makes them durable (from any thread; on failure,
    call it again), then the processor's thread calls :meth:`done`. Handoffs are written one at a time, in order."""

    def __init__(self, processor: Processor, batch: SinkBatch, consumed: Counter[str], folded: Counter[str]) -> None:
        self._processor, self._batch = processor, batch
        self._consumed, self._folded = consumed, folded
        self.generation = processor._generation

    def write(self) -> None:
        self._batch.flush(self._processor._flush_timeout)

    def done(self) -> None:
        """Its records are durable (call from the processor's thread)."""
        self._processor._durable(self._consumed, self._folded, self.generation)


class Processor:
    def __init__(
        self,
        sink: Sink,
        dead_letters: DeadLetters,
        context: FoldContext,
        *,
        metrics: ProcessorMetrics | None = None,
        allowed_lateness_ms: int = 60_000,
        sink_flush_timeout_s: float = 30.0,
        state_store: StateStore | None = None,
    ) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.context = context
        self.metrics = metrics or ProcessorMetrics(None)
        self.state_store = state_store
        self.states: dict[str, JobFoldState] = {}
        self.partition_of: dict[str, tuple[str, int]] = {}
        self.status_of: dict[str, str] = {}
        self._max_event_ms = 0
        self._allowed_lateness_ms = allowed_lateness_ms
        self._flush_timeout = sink_flush_timeout_s
        self.on_wait: Callable[[], None] | None = None  # called while the sink pushes back (a liveness beat)
        self._keep_events = bool(getattr(sink, "wants_events", False))
        self._resident: set[str] = set()  # jobs the checkpoint says are in memory
        self._partition_max: dict[tuple[str, int], int] = {}
        self._partition_max_written: dict[tuple[str, int], int] = {}
        self._evicted_at_watermark: int | None = None
        self._dirty: set[str] = set()  # jobs changed since their last snapshot
        # Jobs that left memory, until the flush with their last snapshot is durable (a later event brings them
        # back from here: the store may not have that snapshot yet), with the handoff generation that carries it.
        self._leaving: dict[str, tuple[JobFoldState, int, int]] = {}  # job -> (state, generation, partition)
        self._generation = 0
        self._consumed: Counter[str] = Counter()
        self._folded: Counter[str] = Counter()
        self._collector = CollectorPause()

    @property
    def watermark_ms(self) -> int | None:
        return self._max_event_ms - self._allowed_lateness_ms if self._max_event_ms else None

    def _decode(self, item: RawEvent) -> Event | None:
        try:
            return decode_event(item.value)
        except UnknownSchemaError as exc:
            self._dead_letter(item, "unknown_schema", str(exc))
        except SerializationError as exc:
            self._dead_letter(item, "undecodable", str(exc))
        return None

    def _dead_letter(self, item: RawEvent, reason: str, detail: str) -> None:
        self.dead_letters.send(item.value, reason, detail, item.topic, item.partition, item.offset)
        self.metrics.dead_lettered(reason)

    # --- the batch path ---------------------------------------------------------------------------------------

    def fold_batch(self, items: Sequence[RawEvent]) -> list[Record]:
        """Fold a batch and hand its records to the sink (buffered, not yet durable: see :meth:`flush`)."""
        self._collector.hold()  # released by the flush (see CollectorPause)
        try:
            return self._fold_batch(items)
        except BaseException:
            self._collector.release()
            raise

    def _fold_batch(self, items: Sequence[RawEvent]) -> list[Record]:
        started = time.perf_counter()
        decoded = [(item, event) for item in items if (event := self._decode(item)) is not None]
        if self.state_store is not None:
            self._load({event.job_id: (item.topic, item.partition) for item, event in decoded})
        outputs: list[Record] = []
        touched: set[str] = set()
        states, partition_of, context = self.states, self.partition_of, self.context
        partition_max = self._partition_max
        types = [event.event_type for _, event in decoded]  # counted per batch: Counter.update runs in C
        self._consumed.update(types)
        self._folded.update(types)
        for item, event in decoded:
            try:
                state, records = fold(states.get(event.job_id), event, context)
            except Exception as exc:  # a fold bug must not stop the pipeline or lose the event
                log.exception("fold failed on %s", event.event_id)
                self._dead_letter(item, "fold_error", f"{type(exc).__name__}: {exc}")
                self._folded[event.event_type] -= 1
                continue
            states[event.job_id] = state
            partition_of[event.job_id] = (item.topic, item.partition)
            touched.add(event.job_id)
            if self._keep_events:
                outputs.append(_event_record(event, item.value))
            outputs += records
            time_ms = event.event_time
            if time_ms > self._max_event_ms:
                self._max_event_ms = time_ms
            where = (item.topic, item.partition)
            if time_ms > partition_max.get(where, 0):
                partition_max[where] = time_ms
        outputs += self._snapshots(touched)
        if self.state_store is not None:
            self._dirty |= touched
            outputs += self._checkpoint(touched)
        self.metrics.fold_seconds(time.perf_counter() - started, len(items))
        # Within a batch only the newest record per key matters (the sink would keep just that one).
        latest: dict[tuple[str, tuple[str, ...]], Record] = {}
        for record in outputs:
            latest[(record.KIND, record.key())] = record
        self.sink.write(list(latest.values()))
        return outputs

    def flush(self) -> None:
        """Make what :meth:`fold_batch` handed over durable, with a snapshot of every job it changed; raises
        :class:`SinkBackpressure` when the store cannot take it now (the records stay buffered: call again)."""
        try:
            self._carry()
            self.sink.flush(self._flush_timeout)
            self._generation += 1
            self._durable(*self._take_counts(), self._generation)
        finally:
            self._collector.release()

    def _durable(self, consumed: Counter[str], folded: Counter[str], generation: int) -> None:
        """The records of handoffs up to ``generation`` are durable: count their events, and forget the jobs that
        left memory before them."""
        # Counted once durable: a scrape never shows work the sink could still lose.
        self.metrics.counted(consumed, folded)
        self.metrics.jobs(self.status_of)
        leaving = self._leaving
        for job_id in [j for j, (_, made, _) in leaving.items() if made <= generation]:
            del leaving[job_id]

    def handoff(self) -> Handoff:
        """What :meth:`fold_batch` handed over since the last handoff, with a snapshot of every job it changed,
        detached from the sink for :meth:`Handoff.write` (the dead letters are flushed here, before it)."""
        try:
            self._carry()
            self._generation += 1
            return Handoff(self, self.sink.detach(), *self._take_counts())
        finally:
            self._collector.retire()

    def _carry(self) -> None:
        """What a flush carries beside the batches' records: a snapshot of every job changed since the last one.
        The dead letters are flushed first."""
        if self._dirty:
            self.sink.write([self._job_snapshot(self.states[j]) for j in sorted(self._dirty) if j in self.states])
            self._dirty.clear()
        self.dead_letters.flush(self._flush_timeout)

    def _take_counts(self) -> tuple[Counter[str], Counter[str]]:
        """The events consumed and folded since the last flush, counted anew from here."""
        counts = self._consumed, self._folded
        self._consumed, self._folded = Counter(), Counter()
        return counts

    def process_batch(self, items: Sequence[RawEvent]) -> None:
        """Fold a batch and make its records durable, waiting out backpressure (replay and tests; the consumer
        loop pauses its partitions instead)."""
        self.fold_batch(items)  # its records are not kept here: they would stay alive through the flush
        self.flush_waiting()

    def flush_waiting(self) -> None:
        """:meth:`flush`, waiting out backpressure."""
        self.waiting(self.flush)

    def waiting(self, write: Callable[[], None]) -> None:
        """``write`` (a flush, or a :meth:`Handoff.write` in any thread), again until the sink takes it: its
        backpressure is waited out, counted and logged."""
        delay = 0.1
        while True:
            try:
                write()
                return
            except SinkBackpressure as exc:
                self.metrics.backpressure()
                if self.on_wait is not None:
                    self.on_wait()
                log.warning("sink %s pushes back: %s; retrying in %.1fs", self.sink.name, exc, exc.retry_after)
                time.sleep(max(delay, exc.retry_after))
                delay = min(delay * 2, 30.0)

    def _status(self, state: JobFoldState, watermark: int | None) -> str:
        return snapshot(state, watermark, self.context).status if state.is_job() else NOT_A_JOB

    def _snapshots(self, touched: set[str]) -> list[Record]:
        """State records of the touched jobs, and of running jobs the watermark has now made lost."""
        watermark = self.watermark_ms
        out: list[Record] = []
        candidates = touched | {job for job, status in self.status_of.items() if status in _WATCHED}
        for job_id in sorted(candidates):
            state = self.states.get(job_id)
            if state is None:
                continue
            if not state.is_job():  # annotations on artifacts under this key: no job row
                self.status_of[job_id] = NOT_A_JOB
                continue
            record = snapshot(state, watermark, self.context)
            if job_id in touched or record.status != self.status_of.get(job_id):
                out.append(record)
                out += attempt_snapshots(state, record)
            self.status_of[job_id] = record.status
        return out

    # --- bounded state --------------------------------------------------------------------------------------

    def _load(self, wanted: dict[str, tuple[str, int]]) -> None:
        """Bring back, from the store, the jobs of this batch that are not in memory."""
        missing = [job_id for job_id in wanted if job_id not in self.states]
        if not missing:
            return
        started = time.perf_counter()
        loaded = self._bring_back_leaving(missing)
        missing = [job_id for job_id in missing if job_id not in loaded]
        if missing:
            loaded |= self._bring_back(missing)
        for job_id in loaded:
            self.partition_of[job_id] = wanted[job_id]
        self.metrics.state_loaded(len(loaded), time.perf_counter() - started)

    def _bring_back_leaving(self, job_ids: list[str]) -> set[str]:
        """Jobs that left memory since the last durable flush, from where they wait for it."""
        found = {job_id for job_id in job_ids if job_id in self._leaving}
        watermark = self.watermark_ms
        for job_id in found:
            self.states[job_id] = self._leaving.pop(job_id)[0]
            self.status_of[job_id] = self._status(self.states[job_id], watermark)
        return found

    def _bring_back(self, job_ids: list[str]) -> set[str]:
        """Jobs from their snapshots, or, without a usable one, from their stored events; returns those found."""
        assert self.state_store is not None
        found: set[str] = set()
        registry_version = self.context.registry.version
        stored, events = self.state_store.load(job_ids)
        unusable: list[str] = []
        for job_id, (fold_version, snapshot_registry, data) in stored.items():
            if fold_version != FOLD_VERSION or snapshot_registry != registry_version:
                unusable.append(job_id)  # made by another fold or registry: the events tell what this one makes
                continue
            try:
                self.states[job_id] = snapshots.load(data)
            except snapshots.SnapshotError as exc:
                log.warning("the snapshot of %s is not usable (%s); folding its events again", job_id, exc)
                unusable.append(job_id)
                continue
            found.add(job_id)
        found |= self._refold(events)
        if unusable:
            found |= self._refold(self.state_store.job_events(unusable))
        watermark = self.watermark_ms
        for job_id in found:
            self.status_of[job_id] = self._status(self.states[job_id], watermark)
        return found

    def _refold(self, raw_events: Iterable[bytes]) -> set[str]:
        """Fold a store's events of jobs into state without outputs; returns the jobs."""
        jobs = {event.job_id for raw in raw_events if (event := self._fold_stored(raw)) is not None}
        self._dirty |= jobs  # a snapshot next time, so the next load is cheap
        return jobs

    def _fold_stored(self, raw: bytes) -> Event | None:
        """Fold an event handed off before (from the store or the log) into state, without outputs; None when it
        does not decode or fold (it was dead-lettered when it was first processed)."""
        try:
            event = decode_event(raw)
            state, _ = fold(self.states.get(event.job_id), event, self.context)
        except Exception as exc:
            log.debug("skipping an event folded before: %s", exc)
            return None
        self.states[event.job_id] = state
        return event

    def _job_snapshot(self, job: JobFoldState) -> JobSnapshot:
        return JobSnapshot(job.job_id, snapshots.dump(job), self.context.registry.version, job.version)

    def forget_finished(self, job_ids: Iterable[str]) -> None:
        """Drop from memory those of ``job_ids`` that are not running: for a source that has delivered every event
        of these jobs (a replay of a log in job order), nothing changes them any more. A running job stays, since
        the watermark can still make it lost."""
        states, status_of, partition_of = self.states, self.status_of, self.partition_of
        for job_id in [j for j in job_ids if j in states and status_of.get(j) not in _WATCHED]:
            del states[job_id]
            status_of.pop(job_id, None)
            partition_of.pop(job_id, None)

    def _evict(self, touched: set[str]) -> set[str]:
        """Forget the jobs the watermark has passed that nothing but a new event can change: every such job when
        the watermark moved, else those of this batch (e.g. an old job a late event brought back)."""
        watermark = self.watermark_ms
        if watermark is None:
            return set()
        candidates: Iterable[str] = touched
        if watermark != self._evicted_at_watermark:
            self._evicted_at_watermark = watermark
            candidates = list(self.status_of)
        status_of = self.status_of
        gone = {
            job_id
            for job_id in candidates
            if job_id in status_of
            and status_of[job_id] not in _WATCHED
            and self.states[job_id].last_event_ms < watermark
        }
        for job_id in gone:
            del self.status_of[job_id]
        return gone

    def _checkpoint(self, touched: set[str]) -> list[Record]:
        """Jobs leaving memory (with their last snapshot), residency changes and advanced partition watermarks, to
        be written with the batch's records."""
        evicted = self._evict(touched)
        version = time.time_ns()
        out: list[Record] = []
        for job_id in evicted:
            job = self.states.pop(job_id)
            if job_id in self._dirty:  # its last state, for whichever event brings it back
                self._dirty.discard(job_id)
                out.append(self._job_snapshot(job))
            topic, partition = self.partition_of.pop(job_id)
            self._leaving[job_id] = (job, self._generation + 1, partition)  # until the next handoff is durable
            if job_id in self._resident:
                self._resident.discard(job_id)
                out.append(ResidentJob(topic, partition, job_id, False, version))
        for job_id in self.states.keys() - self._resident:
            topic, partition = self.partition_of[job_id]
            out.append(ResidentJob(topic, partition, job_id, True, version))
            self._resident.add(job_id)
        for where, newest in self._partition_max.items():
            if newest > self._partition_max_written.get(where, 0):
                out.append(PartitionWatermark(where[0], where[1], newest))
                self._partition_max_written[where] = newest
        self.metrics.memory(len(self.states), len(evicted))
        return out

    # --- partitions coming and going ------------------------------------------------------------------------

    def resume(self, topic: str, partitions: Sequence[int]) -> int:
        """Load the jobs the partitions' last worker held in memory, and its watermark; returns the job count."""
        if self.state_store is None or not partitions:
            return 0
        started = time.perf_counter()
        resident = self.state_store.resident_jobs(topic, partitions)
        newest = self.state_store.watermark(topic, partitions)
        if newest is not None:
            self._max_event_ms = max(self._max_event_ms, newest)
            for partition in partitions:
                self._partition_max_written[(topic, partition)] = max(
                    newest, self._partition_max_written.get((topic, partition), 0)
                )
        self._bring_back(sorted(resident))
        for job_id, partition in resident.items():
            if job_id in self.states:  # else the store has none of its events: nothing to hold
                self.partition_of[job_id] = (topic, partition)
                self._resident.add(job_id)
        seconds = time.perf_counter() - started
        self.metrics.resumed(len(resident), seconds)
        self.metrics.memory(len(self.states), 0)
        log.info("resumed %s%s: %d jobs in %.2fs", topic, sorted(partitions), len(resident), seconds)
        return len(resident)

    def rebuild(self, items: Iterable[RawEvent]) -> int:
        """Fold already-committed events into state without outputs (a partition rebuilt from the log)."""
        count = 0
        for item in items:
            event = self._fold_stored(item.value)
            if event is None:
                continue
            self.partition_of[event.job_id] = (item.topic, item.partition)
            self._max_event_ms = max(self._max_event_ms, event.event_time)
            count += 1
        for job_id in [j for j in self.states if j not in self.status_of]:
            self.status_of[job_id] = self._status(self.states[job_id], self.watermark_ms)
        return count

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the jobs of revoked partitions (another worker owns them now)."""
        for job_id in [j for j, (_, p) in self.partition_of.items() if p in partitions]:
            self.states.pop(job_id, None)
            self.partition_of.pop(job_id, None)
            self.status_of.pop(job_id, None)
            self._resident.discard(job_id)
            self._dirty.discard(job_id)
        for job_id in [j for j, (_, _, p) in self._leaving.items() if p in partitions]:
            del self._leaving[job_id]
        for where in [w for w in self._partition_max if w[1] in partitions]:
            self._partition_max.pop(where, None)
            self._partition_max_written.pop(where, None)
        self.metrics.memory(len(self.states), 0)


def _event_record(event: Event, raw: bytes) -> EventRecord:
    return EventRecord(
        event_id=event.event_id,
        job_id=event.job_id,
        event_type=event.event_type,
        event_time_ms=event.event_time,
        emitted_at_ms=event.emitted_at,
        producer=f"{event.producer.name}/{event.producer.version}",
        producer_instance=event.producer.instance_id,
        seq=event.seq,
        attempt=event.attempt,
        raw=raw,
    )


__all__ = ["Processor", "RawEvent", "SinkError"]
