"""`jobprov process`: a confluent-kafka batch consumer loop around :class:`Processor`.

- One consumer in the group ``app_id`` (cooperative-sticky rebalancing, from librdkafka), reading the events
  topic (keyed by job id, so a job's history is in one partition) in batches of ``batch_size``.
- At least once: offsets are committed only after the records of the batches they cover are durable in the sink
  (flushed every ``commit_interval_s`` or ``commit_max_events`` under load, at once when the topic is idle); the
  records are idempotent, so a redelivered batch changes nothing.
- A flush is written by a thread of its own while the loop folds the next events (one flush in flight: the next
  waits for it, so flushes reach the store in order), and its offsets are committed once it is durable. Streaming
  160k events into the embedded store on 2 cores (benchmarks/fold.py's workload): 38-39k events/s with each flush
  waited for, 40-43k with the write beside the fold; against a ClickHouse server the wait hidden is the network's
  and the server's.
- Backpressure: when the sink cannot take a batch, the assigned partitions are paused (the consumer keeps
  polling, so it stays in the group) and the flush is retried after the sink's ``retry_after``; they resume
  once it succeeds. The loop never sleeps.
- Rebalancing: a partition handed over is flushed and committed first (when the store takes it), and its jobs
  leave memory; a partition assigned loads the jobs its last worker held from the store's checkpoints
  (:meth:`Processor.resume`) and resumes at the committed offset. Without a store (the derived-records topic
  sink) it is rebuilt from the log up to the committed offset instead.
- ``own_all=True`` (``jobprov up``, whose embedded store admits one worker): the worker takes every partition of
  the topic itself at the group's committed offsets instead of joining the group, so it folds the first event at
  once; a group join with the embedded broker waits about half the session timeout.
- Stops on SIGINT/SIGTERM: the batch in hand is finished, flushed and committed, and the consumer leaves the
  group (its partitions move at once). ``drain=True`` first folds whatever the topic still holds until it has
  been quiet for a second, for at most ten (``jobprov up``, whose broker keeps its log in memory); a second signal
  stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from jobprov.emitters.kafka import parse_kafka_url
from jobprov.errors import ConfigError, JobprovError
from jobprov.settings import ProcessorSettings
from jobprov.sinks.base import Sink, SinkBackpressure
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.comparability import ComparabilityRegistry, load_registry
from jobprov.stream_processors.dead_letters import DeadLetters, DeadLetterTopic, FanOut
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.metrics import ProcessorMetrics
from jobprov.stream_processors.processor import Handoff, Processor, RawEvent

log = logging.getLogger("jobprov.worker")

_PREFIX_IDLE_TIMEOUT_S = 15.0
_DRAIN_IDLE_S = 1.0  # a drain ends once the topic has been quiet this long ...
_DRAIN_MAX_S = 10.0  # ... or after this long, so that emitters that never pause cannot keep it from stopping


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    kafka_config: Mapping[str, str] | None = None,
    *,
    replication_factor: int = 1,
) -> None:
    """Create topics with the partition counts we mean (an auto-created topic gets the broker's default).
    Topics that exist already are left as they are."""
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(kafka_config or {})})
    except KafkaException as exc:
        raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=replication_factor) for name, n in topics.items()]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise JobprovError(f"cannot create topic {name}: {exc}") from exc


def read_prefix(
    bootstrap: str, topic: str, partition: int, end_offset: int, kafka_config: Mapping[str, str] | None = None
) -> Iterator[RawEvent]:
    """Every message of a partition before ``end_offset``. Counts offsets; never trusts watermarks."""
    if end_offset <= 0:
        return
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "jobprov-rebuild",  # never joins a group: partitions are assigned by hand
            "enable.auto.commit": False,
            "log_level": 0,
            **(kafka_config or {}),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        last_progress = time.monotonic()
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_progress > _PREFIX_IDLE_TIMEOUT_S:
                    raise JobprovError(f"rebuilding {topic}[{partition}]: the log stopped before offset {end_offset}")
                continue
            if msg.error():
                continue
            last_progress = time.monotonic()
            offset = msg.offset() or 0
            if offset >= end_offset:
                return
            yield RawEvent(msg.value() or b"", topic, partition, offset)
            if offset >= end_offset - 1:
                return
    finally:
        consumer.close()


def consumer_config(settings: ProcessorSettings) -> dict[str, Any]:
    """The worker's librdkafka consumer: the group, cooperative-sticky assignment, manual commits, and the
    ``kafka_*`` security settings (the same the emitter's and the dead-letter producers use)."""
    bootstrap, _ = parse_kafka_url(settings.source_url)
    session_ms = int(settings.session_timeout_s * 1000)
    return {
        "bootstrap.servers": bootstrap,
        "group.id": settings.app_id,
        "client.id": f"{settings.app_id}-worker",
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(500, session_ms // 5),
        "max.poll.interval.ms": max(300_000, session_ms + 1),
        "fetch.max.bytes": 16 * 1024 * 1024,
        "log_level": 3,
        **settings.kafka_config(),
    }


def make_sink(settings: ProcessorSettings) -> Sink:
    """The sink the settings name: ClickHouse (migrated on start) or the derived-records topic."""
    bootstrap, _ = parse_kafka_url(settings.source_url)
    if settings.sink_url is None:
        from jobprov.sinks.kafka_topic import KafkaTopicSink

        return KafkaTopicSink(bootstrap, settings.derived_topic, settings.kafka_config())
    from jobprov.sinks.clickhouse.client import connect, second_connection
    from jobprov.sinks.clickhouse.ddl import Target
    from jobprov.sinks.clickhouse.migrate import migrate

    url = settings.sink_url

    def connection() -> Any:
        return connect(url, username=settings.clickhouse_username, password=settings.clickhouse_password)

    client = connection()
    if settings.migrate_on_start:
        migrate(client, Target(settings.clickhouse_database, settings.clickhouse_cluster))
    # The flushes are written beside the fold, which reads the store (jobs coming back): each on its own connection.
    return ClickHouseSink(client, settings.clickhouse_database, writer=second_connection(client) or connection())


def make_processor(settings: ProcessorSettings, sink: Sink, metrics: ProcessorMetrics) -> Processor:
    """The processor for a sink: with the ClickHouse sink, dead letters go to its table too and the store keeps
    the state (bounded memory, resume from checkpoints)."""
    from jobprov.sinks.clickhouse.state import ClickHouseStateStore

    bootstrap, _ = parse_kafka_url(settings.source_url)
    registry = (
        load_registry(settings.comparability_registry) if settings.comparability_registry else ComparabilityRegistry()
    )
    dead_letters: DeadLetters = DeadLetterTopic(bootstrap, settings.dead_letter_topic, settings.kafka_config())
    state_store = None
    if isinstance(sink, ClickHouseSink):
        dead_letters = FanOut(dead_letters, ClickHouseDeadLetters(sink.client, sink.database))
        state_store = ClickHouseStateStore(sink.client, sink.database)
    return Processor(
        sink,
        dead_letters,
        FoldContext(registry=registry, lost_after_ms=int(settings.lost_after_s * 1000)),
        metrics=metrics,
        allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
        sink_flush_timeout_s=settings.sink_flush_timeout_s,
        state_store=state_store,
    )


class Worker:
    """The consumer loop. :meth:`run` returns after :meth:`stop` (from a signal handler or another thread)."""

    def __init__(
        self,
        settings: ProcessorSettings,
        processor: Processor,
        *,
        beat: Callable[[], None] | None = None,
        drain: bool = False,
        own_all: bool = False,
        on_fold: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_fold = on_fold or (lambda: None)  # told after each batch folded (the parts beside it yield)
        self._own_all = own_all
        self.processor = processor
        self.bootstrap, self.topic = parse_kafka_url(settings.source_url)
        self._beat = beat or (lambda: None)
        self._drain = drain
        self._stop = threading.Event()
        self._stopped_at = 0.0
        self._pending: dict[int, int] = {}  # partition -> next offset to commit, once the sink has the batch
        self._unflushed = 0  # events folded into the sink's buffer since the last flush
        self._unflushed_since = 0.0
        self._paused = False
        self._retry_at = 0.0
        self._delay = 0.1
        self._held: list[Message] = []  # messages that arrived while paused
        # One flush at a time is written beside the fold (the store takes a flush while the next events fold):
        # the handoff, its write, and the offsets it makes committable; or one waiting to be written again.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobprov-flush")
        self._in_flight: tuple[Handoff, Future[None] | None, dict[int, int]] | None = None
        self.stats = _Throughput()
        try:
            self.consumer = Consumer(consumer_config(settings))
        except KafkaException as exc:
            raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc

    def stop(self) -> None:
        """End the loop (after the drain, when asked for one); a second call ends it without draining."""
        if self._stop.is_set():
            self._drain = False
        else:
            self._stopped_at = time.monotonic()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        if self._own_all:
            metadata = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
            partitions = [TopicPartition(self.topic, p) for p in sorted(metadata.partitions)]
            self._on_assign(self.consumer, partitions)
            self.consumer.assign(partitions)  # from the group's committed offsets
        else:
            self.consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        try:
            idle_since: float | None = None
            while True:
                self._beat()
                if self._stop.is_set():
                    if not self._drain or self._paused or time.monotonic() - self._stopped_at >= _DRAIN_MAX_S:
                        break
                    if idle_since is not None and time.monotonic() - idle_since >= _DRAIN_IDLE_S:
                        break
                if self._paused:
                    self._wait_out_backpressure()
                    continue
                messages = self._held or self.consumer.consume(
                    self.settings.batch_size, timeout=self.settings.batch_timeout_s
                )
                self._held = []
                if self._handle(messages):
                    idle_since = None
                    if (writing := self._writing()) is not None and writing.done():
                        self._settle()  # commit as soon as it is durable
                else:
                    if self._unflushed:
                        self._flush()  # nothing more is coming now: make what waits visible
                    if self._in_flight is not None:
                        self._settle()
                    if idle_since is None:
                        idle_since = time.monotonic()
            if self._unflushed and not self._paused:
                self._flush()
            if self._writing() is not None:
                self._settle(synchronous=True)  # what is being written now (one pushed back is redone later)
        finally:
            self._writer.shutdown(wait=True)
            self.consumer.close()  # leaves the group: the partitions move now, not after the session timeout

    def _handle(self, messages: list[Message]) -> bool:
        """Fold a batch into the sink's buffer, and flush and commit when due; False when there was nothing."""
        items: list[RawEvent] = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise JobprovError(f"the consumer failed: {error}")
                log.warning("consumer: %s", error)
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            items.append(RawEvent(msg.value() or b"", self.topic, partition, offset))
            self._pending[partition] = offset + 1
        if not items:
            return False
        started = time.perf_counter()
        self.processor.fold_batch(items)
        self._on_fold()
        if not self._unflushed:
            self._unflushed_since = time.monotonic()
        self._unflushed += len(items)
        if (
            self._unflushed >= self.settings.commit_max_events
            or time.monotonic() - self._unflushed_since >= self.settings.commit_interval_s
        ):
            self._flush()
        self.stats.add(len(items), time.perf_counter() - started)
        self._report_lag()
        return True

    def _flush(self) -> None:
        """Hand what was folded since the last flush to the store, to be written beside the next folds, once the
        previous flush is durable (and its offsets committed); on backpressure the partitions are paused and the
        flush retried later."""
        if not self._settle():
            return
        handoff = self.processor.handoff()
        offsets, self._pending = self._pending, {}
        self._in_flight = (handoff, self._writer.submit(handoff.write), offsets)
        self._unflushed = 0

    def _writing(self) -> Future[None] | None:
        """The write of the flush in flight, when one is being written (not waiting out backpressure)."""
        return None if self._in_flight is None else self._in_flight[1]

    def _settle(self, *, synchronous: bool = False) -> bool:
        """Wait for the flush in flight (written again here when the store pushed back), commit its offsets;
        False while the store pushes back (the partitions are paused: it is retried after the wait)."""
        if self._in_flight is None:
            return True
        handoff, writing, offsets = self._in_flight
        try:
            if writing is not None:
                writing.result()
            else:
                handoff.write()
        except SinkBackpressure as exc:
            self._in_flight = (handoff, None, offsets)  # written again, here, once the wait is over
            self.processor.metrics.backpressure()
            wait = max(self._delay, exc.retry_after)
            self._delay = min(self._delay * 2, 30.0)
            self._retry_at = time.monotonic() + wait
            if not self._paused:
                self.consumer.pause(self.consumer.assignment())
                self._paused = True
            log.warning("sink %s pushes back: %s; partitions paused, retrying in %.1fs", self.processor.sink.name,
                        exc, wait)  # fmt: skip
            return False
        self._in_flight = None
        handoff.done()
        self._commit(offsets, asynchronous=not synchronous)
        self._delay = 0.1
        if self._paused:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False
        return True

    def _wait_out_backpressure(self) -> None:
        # Polling keeps the group membership and serves rebalances; paused partitions deliver nothing (what was
        # fetched before the pause is held for after it).
        timeout = min(0.5, max(0.0, self._retry_at - time.monotonic()))
        self._held += self.consumer.consume(self.settings.batch_size, timeout=timeout)
        if time.monotonic() >= self._retry_at:
            self._settle()

    def _commit(self, offsets: dict[int, int], *, asynchronous: bool) -> None:
        """Commit offsets whose records are durable; a failed commit is left to the next one (which carries
        later offsets of the same partitions, or these again at the end)."""
        if not offsets:
            return
        committing = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=committing, asynchronous=True)
            else:
                self.consumer.commit(offsets=committing, asynchronous=False)
        except KafkaException as exc:  # a redelivery changes nothing
            log.warning("commit failed: %s", exc)

    def _report_lag(self) -> None:
        """Lag from the high watermark of the last fetch. Tansu's watermark counts batches, not records, so there
        this under-reports; on Kafka it is right."""
        for partition, next_offset in list(self._pending.items()):
            try:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                self.processor.metrics.lag(partition, high - next_offset)

    # --- rebalancing --------------------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions if tp.topic == self.topic)
        if not numbers:
            return
        started = time.perf_counter()
        if self.processor.state_store is not None:
            self.processor.resume(self.topic, numbers)
        else:
            committed = consumer.committed([TopicPartition(self.topic, p) for p in numbers], timeout=30)
            for tp in committed:
                if tp.offset > 0:
                    count = self.processor.rebuild(
                        read_prefix(self.bootstrap, self.topic, tp.partition, tp.offset, self.settings.kafka_config())
                    )
                    log.info("rebuilt %s[%d] from %d events", self.topic, tp.partition, count)
        log.info("assigned %s%s in %.2fs", self.topic, numbers, time.perf_counter() - started)
        if self._paused:  # newly assigned partitions wait with the others (assigned first: pause needs them)
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions if tp.topic == self.topic}
        if self._unflushed and not self._paused:
            self._flush()  # what the store takes now need not be redone by the next owner
        if self._writing() is not None:
            self._settle(synchronous=True)
        for partition in numbers:
            self._pending.pop(partition, None)  # not durable: the next owner redoes it
        self._forget(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions if tp.topic == self.topic}
        for partition in numbers:
            self._pending.pop(partition, None)  # another worker may own them already: commit nothing
        self._forget(numbers)

    def _forget(self, partitions: set[int]) -> None:
        self.processor.drop_partitions(partitions)
        self.processor.metrics.forget_partitions(partitions)  # another worker reports their lag now
        self._held = [m for m in self._held if m.partition() not in partitions]
        log.info("revoked %s%s", self.topic, sorted(partitions))


def run_worker(
    settings: ProcessorSettings,
    sink: Sink,
    *,
    drain: bool = False,
    own_all: bool = False,
    on_signal: Callable[[], None] | None = None,
    collectors: Sequence[Any] = (),
    on_fold: Callable[[], None] | None = None,
) -> None:
    """Create the topics, serve the metrics (the worker's, and those of ``collectors``: Prometheus collectors of
    the parts running beside it), and run the consumer loop until SIGINT or SIGTERM (``on_fold`` is told after
    each batch it folds). Must run in the main thread (it installs the signal handlers, and restores the previous
    ones on return)."""
    from prometheus_client import CollectorRegistry

    from jobprov.stream_processors.health import Liveness, serve

    bootstrap, topic = parse_kafka_url(settings.source_url)
    ensure_topics(
        bootstrap,
        {topic: settings.partitions, settings.dead_letter_topic: 1, settings.derived_topic: settings.partitions},
        settings.kafka_config(),
        replication_factor=settings.topic_replication_factor,
    )
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    liveness = Liveness(settings.liveness_timeout_s)
    if settings.metrics_port:
        serve(settings.metrics_port, settings.metrics_bind, registry, liveness)
    processor = make_processor(settings, sink, ProcessorMetrics(registry))
    processor.on_wait = liveness.beat  # waiting out the store is alive, not stuck
    worker = Worker(settings, processor, beat=liveness.beat, drain=drain, own_all=own_all, on_fold=on_fold)
    with _stop_on_signals(worker, on_signal):
        worker.run()


class _stop_on_signals:
    def __init__(self, worker: Worker, on_signal: Callable[[], None] | None) -> None:
        self.worker = worker
        self.on_signal = on_signal
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        if self.on_signal is not None and not self.worker.stopping:
            self.on_signal()
        self.worker.stop()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _Throughput:
    """Logs, at most every 10 s, how many events were folded and how much of the time was the fold's."""

    def __init__(self) -> None:
        self.events = self.batches = 0
        self.busy = 0.0
        self.since = time.monotonic()

    def add(self, events: int, busy: float) -> None:
        self.events += events
        self.batches += 1
        self.busy += busy
        elapsed = time.monotonic() - self.since
        if elapsed >= 10:
            log.info(
                "%d events in %d batches, %.0f events/s, processing %.0f%% of the time",
                self.events,
                self.batches,
                self.events / elapsed,
                100 * self.busy / elapsed,
            )
            self.events = self.batches = 0
            self.busy = 0.0
            self.since = time.monotonic()
