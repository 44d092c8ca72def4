"""The stream processor's core, independent of the streaming framework: decode, fold, hand off.

One :class:`Processor` owns the fold states of the jobs in its partitions. For each batch it decodes every
message (undecodable ones go to dead letters with the reason and source position), folds, snapshots every job
the batch touched, writes the records to the sink and flushes it. Only then does the caller let the consumer
commit the batch's offsets, so at-least-once delivery plus idempotent records give exactly-once results.

State is rebuilt from the event log, never from a changelog: on partition assignment the caller replays the
partition from its start up to the committed offset through :meth:`rebuild` (no outputs), then resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from jobprov.errors import SerializationError, SinkError, UnknownSchemaError
from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import Event
from jobprov.schemas.wire import decode_event
from jobprov.sinks.base import Sink, SinkBackpressure
from jobprov.stream_processors.dead_letters import DeadLetters
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.metrics import ProcessorMetrics
from jobprov.stream_processors.records import EventRecord, Record
from jobprov.stream_processors.state import JobFoldState

log = logging.getLogger("jobprov.processor")


@dataclass(frozen=True)
class RawEvent:
    value: bytes
    topic: str
    partition: int
    offset: int


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
    ) -> None:
        self.sink = sink
        self.dead_letters = dead_letters
        self.context = context
        self.metrics = metrics or ProcessorMetrics(None)
        self.states: dict[str, JobFoldState] = {}
        self.partition_of: dict[str, int] = {}
        self.status_of: dict[str, str] = {}
        self._max_event_ms = 0
        self._allowed_lateness_ms = allowed_lateness_ms
        self._flush_timeout = sink_flush_timeout_s
        self._lock = threading.Lock()
        self.on_wait: Callable[[], None] | None = None  # called while the sink pushes back (a liveness beat)
        self._keep_events = bool(getattr(sink, "wants_events", False))

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

    def process_batch(self, items: Sequence[RawEvent]) -> list[Record]:
        """Fold a batch and make its records durable in the sink; returns the records written."""
        with self._lock:
            started = time.perf_counter()
            outputs: list[Record] = []
            touched: set[str] = set()
            consumed: Counter[str] = Counter()
            folded: Counter[str] = Counter()
            for item in items:
                event = self._decode(item)
                if event is None:
                    continue
                consumed[event.event_type] += 1
                try:
                    state, records = fold(self.states.get(event.job_id), event, self.context)
                except Exception as exc:  # a fold bug must not stop the pipeline or lose the event
                    log.exception("fold failed on %s", event.event_id)
                    self._dead_letter(item, "fold_error", f"{type(exc).__name__}: {exc}")
                    continue
                self.states[event.job_id] = state
                self.partition_of[event.job_id] = item.partition
                touched.add(event.job_id)
                if self._keep_events:
                    outputs.append(_event_record(event, item.value))
                outputs += records
                self._max_event_ms = max(self._max_event_ms, timestamp_millis(event.event_time))
                folded[event.event_type] += 1
            outputs += self._snapshots(touched)
            self.metrics.fold_seconds(time.perf_counter() - started, len(items))
            self._hand_off(outputs)
            # Counted once durable: a scrape never shows work the sink could still lose.
            self.metrics.counted(consumed, folded)
            self.metrics.jobs(self.status_of)
            return outputs

    def _snapshots(self, touched: set[str]) -> list[Record]:
        """State records of the touched jobs, and of running jobs the watermark has now made lost."""
        watermark = self.watermark_ms
        out: list[Record] = []
        candidates = touched | {job for job, status in self.status_of.items() if status == "running"}
        for job_id in sorted(candidates):
            state = self.states.get(job_id)
            if state is None:
                continue
            record = snapshot(state, watermark, self.context)
            if job_id in touched or record.status != self.status_of.get(job_id):
                out.append(record)
            self.status_of[job_id] = record.status
        return out

    def _hand_off(self, outputs: list[Record]) -> None:
        # Within a batch only the newest record per key matters (the sink would keep just that one).
        latest: dict[tuple[str, tuple[str, ...]], Record] = {}
        for record in outputs:
            latest[(record.KIND, record.key())] = record
        self.sink.write(list(latest.values()))
        delay = 0.1
        while True:
            try:
                self.sink.flush(self._flush_timeout)
                break
            except SinkBackpressure as exc:
                # Hold the batch (and so the offsets) until the store takes it: pause, never drop.
                self.metrics.backpressure()
                if self.on_wait is not None:
                    self.on_wait()
                log.warning("sink %s pushes back: %s; retrying in %.1fs", self.sink.name, exc, exc.retry_after)
                time.sleep(max(delay, exc.retry_after))
                delay = min(delay * 2, 30.0)
        self.dead_letters.flush(self._flush_timeout)

    def rebuild(self, items: Iterable[RawEvent]) -> int:
        """Fold already-committed events into state without outputs (they were handed off before)."""
        count = 0
        with self._lock:
            for item in items:
                try:
                    event = decode_event(item.value)
                    state, _ = fold(self.states.get(event.job_id), event, self.context)
                except Exception as exc:  # dead-lettered when it was first processed
                    log.debug("rebuild skips %s[%d]@%d: %s", item.topic, item.partition, item.offset, exc)
                    continue
                self.states[event.job_id] = state
                self.partition_of[event.job_id] = item.partition
                self._max_event_ms = max(self._max_event_ms, timestamp_millis(event.event_time))
                count += 1
            for job_id in [j for j in self.states if j not in self.status_of]:
                self.status_of[job_id] = snapshot(self.states[job_id], self.watermark_ms, self.context).status
        return count

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the jobs of revoked partitions (another worker owns them now)."""
        with self._lock:
            for job_id in [j for j, p in self.partition_of.items() if p in partitions]:
                self.states.pop(job_id, None)
                self.partition_of.pop(job_id, None)
                self.status_of.pop(job_id, None)


def _event_record(event: Event, raw: bytes) -> EventRecord:
    return EventRecord(
        event_id=event.event_id,
        job_id=event.job_id,
        event_type=event.event_type,
        event_time_ms=timestamp_millis(event.event_time),
        emitted_at_ms=timestamp_millis(event.emitted_at),
        producer=f"{event.producer.name}/{event.producer.version}",
        producer_instance=event.producer.instance_id,
        seq=event.seq,
        attempt=event.attempt,
        raw=raw,
    )


__all__ = ["Processor", "RawEvent", "SinkError"]
