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
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from jobprov.emitters.kafka import parse_kafka_url
from jobprov.errors import ConfigError, JobprovError
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


def make_sink(settings: ProcessorSettings) -> Sink:
    """The sink the settings name: ClickHouse (migrated on start) or the derived-records topic."""
    bootstrap, _ = parse_kafka_url(settings.source_url)
    if settings.sink_url is None:
        from jobprov.sinks.kafka_topic import KafkaTopicSink

        return KafkaTopicSink(bootstrap, settings.derived_topic, settings.kafka_config())
    from jobprov.sinks.clickhouse.client import connect
    from jobprov.sinks.clickhouse.ddl import Target
    from jobprov.sinks.clickhouse.migrate import migrate
    from jobprov.sinks.clickhouse.sink import ClickHouseSink

    client = connect(settings.sink_url, username=settings.clickhouse_username, password=settings.clickhouse_password)
    if settings.migrate_on_start:
        migrate(client, Target(settings.clickhouse_database, settings.clickhouse_cluster))
    return ClickHouseSink(client, settings.clickhouse_database)


def run_worker(
    settings: ProcessorSettings,
    sink: Sink,
    *,
    log_level: str = "warning",
    history: Iterable[RawEvent] | None = None,
) -> None:
    """Create the topics, serve the metrics, and run a faust worker until it is stopped (SIGINT/SIGTERM).

    ``history``: events already folded into the sink that the topic no longer holds (a broker that lost its
    log, e.g. the embedded one after a restart); they rebuild the jobs' state before the first message, so a
    job that spans the restart goes on from where it was. Ends by raising ``SystemExit`` (faust's worker
    does); callers clean up in ``finally``."""
    from faust.worker import Worker
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
    liveness = Liveness(settings.liveness_timeout_s)
    if settings.metrics_port:
        serve(settings.metrics_port, settings.metrics_bind, registry, liveness)
    processor = make_processor(settings, sink, ProcessorMetrics(registry))
    processor.on_wait = liveness.beat  # waiting out the store is alive, not stuck
    if history is not None:
        log.info("rebuilt the state of %d events from the store", processor.rebuild(history))
    app = build_app(settings, processor, liveness)
    worker = Worker(app, loglevel=log_level, quiet=True)
    worker.spinner = None  # its cursor escapes end up in log files and between `jobprov up`'s own lines
    worker.execute_from_commandline()


def make_processor(settings: ProcessorSettings, sink: Sink, metrics: ProcessorMetrics) -> Processor:
    bootstrap, _ = parse_kafka_url(settings.source_url)
    registry = (
        load_registry(settings.comparability_registry) if settings.comparability_registry else ComparabilityRegistry()
    )
    dead_letters: DeadLetters = DeadLetterTopic(bootstrap, settings.dead_letter_topic, settings.kafka_config())
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


def kafka_ssl_context(settings: ProcessorSettings) -> ssl.SSLContext:
    """The TLS context of the ``kafka_ssl_*`` settings, for faust's (aiokafka's) connections: the brokers'
    certificates are verified (against ``kafka_ssl_ca_location``, or the system's CAs) with their host names,
    and a client certificate is presented for mutual TLS when one is set. A file that cannot be read is a
    :class:`ConfigError` naming its setting."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_ca_location)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("processor.kafka_ssl_ca_location", f"cannot load the CA certificates: {exc}") from exc
    if settings.kafka_ssl_certificate_location is not None:
        password = settings.kafka_ssl_key_password.get() if settings.kafka_ssl_key_password else None
        try:
            context.load_cert_chain(
                settings.kafka_ssl_certificate_location, settings.kafka_ssl_key_location, password=password
            )
        except (OSError, ssl.SSLError) as exc:
            # The message is the library's: it never includes the password.
            raise ConfigError(
                "processor.kafka_ssl_certificate_location",
                f"cannot load the client certificate and key ({settings.kafka_ssl_key_location}): {exc}",
            ) from exc
    return context


def faust_broker_credentials(settings: ProcessorSettings) -> Any:
    """faust's ``broker_credentials`` for the ``kafka_*`` settings: None for PLAINTEXT (or unset),
    ``SSLCredentials`` for SSL, ``SASLCredentials`` for SASL_PLAINTEXT, and for SASL_SSL with a TLS context.
    The same settings give the confluent-kafka clients :meth:`ProcessorSettings.kafka_config`."""
    import faust

    protocol = settings.kafka_security_protocol or "PLAINTEXT"
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(kafka_ssl_context(settings))
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise ConfigError("processor.kafka_security_protocol", f"{protocol!r}: not a protocol faust can use")
    if settings.kafka_sasl_password is None:  # load_processor_settings already requires it; direct use may not
        raise ConfigError("processor.kafka_sasl_password", f"required when kafka_security_protocol is {protocol}")
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=kafka_ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def build_app(settings: ProcessorSettings, processor: Processor, liveness: Any = None) -> Any:
    import faust

    bootstrap, topic = parse_kafka_url(settings.source_url)
    kafka_config = settings.kafka_config()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_broker_credentials(settings),
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

    if liveness is not None:

        @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
        async def beat() -> None:  # runs only while the event loop turns
            liveness.beat()

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
                    count = await loop.run_in_executor(
                        None, _rebuild, processor, bootstrap, topic, partition, first, kafka_config
                    )
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
        processor.metrics.forget_partitions(partitions)  # another worker reports their lag now
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


def _rebuild(
    processor: Processor,
    bootstrap: str,
    topic: str,
    partition: int,
    end_offset: int,
    kafka_config: Mapping[str, str] | None = None,
) -> int:
    return processor.rebuild(read_prefix(bootstrap, topic, partition, end_offset, kafka_config))
