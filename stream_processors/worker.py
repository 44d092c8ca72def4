"""`jobprov process`: the faust-streaming worker around :class:`Processor`.

- Consumes the events topic (keyed by job id, so a job's history is in one partition) with
  ``processing_guarantee="at_least_once"``: the broker we run locally cannot do transactions, and the
  records are idempotent anyway.
- Before it folds the first message of a newly assigned partition, it rebuilds that partition's state from
  the log: it reads the partition from its start up to that first offset (which is where the group's
  committed offset resumed it). No changelog topic, no local store: the log is the truth.
- Several workers with the same ``app_id`` share the partitions (at most one worker per partition is busy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from jobprov.emitters.kafka import parse_kafka_url
from jobprov.errors import JobprovError
from jobprov.settings import ProcessorSettings
from jobprov.sinks.base import Sink
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.comparability import ComparabilityRegistry, load_registry
from jobprov.stream_processors.dead_letters import DeadLetters, DeadLetterTopic, FanOut
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.metrics import ProcessorMetrics
from jobprov.stream_processors.processor import Processor, RawEvent

log = logging.getLogger("jobprov.worker")

_PREFIX_IDLE_TIMEOUT_S = 15.0


def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create topics with the partition counts we mean (an auto-created topic gets the broker's default)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise JobprovError(f"cannot create topic {name}: {exc}") from exc


def read_prefix(bootstrap: str, topic: str, partition: int, end_offset: int) -> Iterator[RawEvent]:
    """Every message of a partition before ``end_offset``. Counts offsets; never trusts watermarks."""
    if end_offset <= 0:
        return
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "jobprov-rebuild",  # never joins a group: partitions are assigned by hand
            "enable.auto.commit": False,
            "log_level": 0,
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


def make_sink(settings: ProcessorSettings) -> Sink:
    """The sink the settings name: ClickHouse (migrated on start) or the derived-records topic."""
    bootstrap, _ = parse_kafka_url(settings.source_url)
    if settings.sink_url is None:
        from jobprov.sinks.kafka_topic import KafkaTopicSink

        return KafkaTopicSink(bootstrap, settings.derived_topic)
    from jobprov.sinks.clickhouse.client import connect
    from jobprov.sinks.clickhouse.ddl import Target
    from jobprov.sinks.clickhouse.migrate import migrate
    from jobprov.sinks.clickhouse.sink import ClickHouseSink

    client = connect(settings.sink_url, username=settings.clickhouse_username, password=settings.clickhouse_password)
    migrate(client, Target(settings.clickhouse_database, settings.clickhouse_cluster))
    return ClickHouseSink(client, settings.clickhouse_database)


def run_worker(settings: ProcessorSettings, sink: Sink, *, log_level: str = "warning") -> None:
    """Create the topics, serve the metrics, and run a faust worker until it is stopped (SIGINT/SIGTERM).

    Ends by raising ``SystemExit`` (faust's worker does); callers clean up in ``finally``."""
    from faust.worker import Worker
    from prometheus_client import CollectorRegistry, start_http_server

    bootstrap, topic = parse_kafka_url(settings.source_url)
    ensure_topics(
        bootstrap,
        {topic: settings.partitions, settings.dead_letter_topic: 1, settings.derived_topic: settings.partitions},
    )
    registry = CollectorRegistry()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_bind, registry=registry)
    app = build_app(settings, make_processor(settings, sink, ProcessorMetrics(registry)))
    Worker(app, loglevel=log_level, quiet=True).execute_from_commandline()


def make_processor(settings: ProcessorSettings, sink: Sink, metrics: ProcessorMetrics) -> Processor:
    bootstrap, _ = parse_kafka_url(settings.source_url)
    registry = (
        load_registry(settings.comparability_registry) if settings.comparability_registry else ComparabilityRegistry()
    )
    dead_letters: DeadLetters = DeadLetterTopic(bootstrap, settings.dead_letter_topic)
    if isinstance(sink, ClickHouseSink):
        dead_letters = FanOut(dead_letters, ClickHouseDeadLetters(sink.client, sink.database))
    return Processor(
        sink,
        dead_letters,
        FoldContext(registry=registry, lost_after_ms=int(settings.lost_after_s * 1000)),
        metrics=metrics,
        allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
        sink_flush_timeout_s=settings.sink_flush_timeout_s,
    )


def build_app(settings: ProcessorSettings, processor: Processor) -> Any:
    import faust

    bootstrap, topic = parse_kafka_url(settings.source_url)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        datadir=settings.data_dir,
        store="memory://",
        web_enabled=False,
        web_bind="127.0.0.1",  # faust listens even with the web disabled
        web_port=settings.web_port,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 5),
        broker_max_poll_records=settings.batch_size * 4,
        stream_buffer_maxsize=settings.batch_size * 8,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    source = app.topic(
        topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    rebuilt: set[int] = set()
    stats = _Throughput()

    @app.agent(source, concurrency=1)
    async def fold_events(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_timeout_s):
            items = [RawEvent(e.value, e.message.topic, e.message.partition, e.message.offset) for e in events]
            firsts: dict[int, int] = {}
            for item in items:
                firsts.setdefault(item.partition, item.offset)
            for partition, first in sorted(firsts.items()):
                if partition not in rebuilt:
                    count = await loop.run_in_executor(None, _rebuild, processor, bootstrap, topic, partition, first)
                    log.info("rebuilt %s[%d] from %d events", topic, partition, count)
                    rebuilt.add(partition)
            t0 = time.perf_counter()
            processor.process_batch(items)  # in the loop: an executor thread only adds GIL hand-offs
            stats.add(len(items), time.perf_counter() - t0)
            _report_lag(app, events, processor)

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else set()
        partitions = {tp.partition for tp in revoked if tp.topic == topic}
        processor.drop_partitions(partitions)
        rebuilt.difference_update(partitions)

    app.on_partitions_revoked.connect(on_revoked)
    return app


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


def _report_lag(app: Any, events: list[Any], processor: Processor) -> None:
    """Lag from the high watermark the consumer last saw. Tansu's watermark counts batches, not records, so
    there this under-reports; on Kafka it is right."""
    last: dict[Any, int] = {}
    for event in events:
        last[event.message.tp] = event.message.offset
    for tp, offset in last.items():
        try:
            highwater = app.consumer.highwater(tp)
        except Exception as exc:  # not known yet for this partition
            log.debug("no high watermark for %s yet: %s", tp, exc)
            continue
        if highwater is not None:
            processor.metrics.lag(tp.partition, highwater - offset - 1)


def _rebuild(processor: Processor, bootstrap: str, topic: str, partition: int, end_offset: int) -> int:
    return processor.rebuild(read_prefix(bootstrap, topic, partition, end_offset))
