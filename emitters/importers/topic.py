"""Another tool's JSON records read from a Kafka topic (OpenLineage's KafkaTransport, Slurm's jobcomp/kafka) and
sent as jobprov events through the importer's mapping: the same mapping a file or an HTTP body goes through.

The consumer is a member of a consumer group (``group``): several may share a topic, each record is read by one.

Guarantees:

- At least once: a batch's offsets are committed only after the events of every good record in it were handed to
  the broker or to the spool (a :class:`~jobprov.emitters.base.DeliveryReport` with nothing lost). A crash before
  the commit redelivers the batch; event ids derive from the records, so the redelivery changes nothing.
- A bad record (not JSON, refused by the mapping or by the emitter's checks, or a shape the mapping does not
  foresee and fails on) never stops the consumer and never holds back the records after it: it is reported
  (``report``) with its topic, partition, offset and every problem, copied as it was to the dead-letter topic
  (when there is one) with the reason in its headers (``jobprov-reason: bad_record``, ``jobprov-detail``,
  ``jobprov-source-topic|partition|offset``, as the stream processor's dead letters), and skipped. Nothing is
  dropped silently.
- A commit refused because a rebalance took the partitions away is reported; their new owner reads the batch
  again, harmlessly.
- When events could not be delivered nor spooled, or dead letters were not acknowledged, nothing of the batch is
  committed and :class:`~jobprov.errors.TransportError` stops the consumer: a restart reads the batch again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaException

from jobprov.emitters.importers.send import BadInputError, Record, check, deliver
from jobprov.errors import ConfigError, SinkError, TransportError
from jobprov.settings import EmitterSettings

BAD_RECORD = "bad_record"


class Reader(Protocol):
    def __call__(self, body: Any, source: str) -> list[Record]:
        """The records of one parsed JSON value; raises BadInputError naming what is wrong."""


@dataclass
class IngestStats:
    """What a consumer did: records read, events sent, bad records skipped, batches committed."""

    records: int = 0
    events: int = 0
    bad: int = 0
    commits: int = 0


def consumer_config(bootstrap: str, group: str, settings: EmitterSettings, session_timeout_s: float) -> dict[str, Any]:
    """A group member with manual commits, from the earliest offset when the group has none, with the emitter's
    ``kafka_*`` security settings (the records come from the cluster the events go to, or one like it)."""
    session_ms = int(session_timeout_s * 1000)
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"{group}-ingest",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_ms,
        "heartbeat.interval.ms": max(500, session_ms // 5),
        "log_level": 3,
        **settings.kafka_config(),
    }


class TopicIngest:
    """Reads ``topic`` with ``read`` and sends the events where ``settings`` say (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        read: Reader,
        importer: str,
        settings: EmitterSettings,
        *,
        dead_letter_topic: str | None = None,
        report: Callable[[str], None] = print,
        session_timeout_s: float = 10.0,
    ) -> None:
        from confluent_kafka import Consumer

        from jobprov.stream_processors.dead_letters import DeadLetterTopic

        self.topic, self.read, self.importer, self.settings, self.report = topic, read, importer, settings, report
        try:
            self._consumer = Consumer(consumer_config(bootstrap, group, settings, session_timeout_s))
        except KafkaException as exc:
            raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc
        self._dead = (
            DeadLetterTopic(bootstrap, dead_letter_topic, settings.kafka_config()) if dead_letter_topic else None
        )
        self.stats = IngestStats()

    def _records(self, message: Any) -> list[Record] | None:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        try:
            body = json.loads(message.value() or b"")
            records = self.read(body, where)
            problems = check(records)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problems = [f"not JSON ({exc})"]
        except BadInputError as exc:
            problems = exc.problems
        except Exception as exc:  # a record the mapping did not foresee must not stop the stream (a poison pill)
            problems = [f"cannot be read: {type(exc).__name__}: {exc}"]
        if not problems:
            return records
        self.stats.bad += 1
        detail = "; ".join(problems)
        self.report(f"{where}: skipped a bad record: {detail}")
        if self._dead is not None:
            value = message.value() or b""
            self._dead.send(value, BAD_RECORD, detail, message.topic(), message.partition(), message.offset())
        return None

    def process(self, messages: list[Any]) -> None:
        """Send one batch's events, then commit its offsets (see the module docstring)."""
        records: list[Record] = []
        for message in messages:
            if message.error():
                self.report(f"{self.topic}: consumer error: {message.error()}")
                continue
            self.stats.records += 1
            got = self._records(message)
            records += got or []
        if records:
            delivery = deliver(records, self.settings, self.importer)
            if delivery.lost:
                raise TransportError(
                    f"{delivery.lost} events lost, nothing committed: {'; '.join(delivery.errors[:3])}"
                )
            self.stats.events += len(records)
        if self._dead is not None:
            try:
                self._dead.flush(self.settings.flush_timeout_s)
            except SinkError as exc:
                raise TransportError(f"{exc}; nothing committed") from exc
        if any(not m.error() for m in messages):
            try:
                self._consumer.commit(asynchronous=False)
            except KafkaException as exc:
                # A rebalance took the partitions away: their new owner reads the batch again, which the
                # events' ids make harmless.
                self.report(f"{self.topic}: commit failed, the batch will be read again: {exc}")
                return
            self.stats.commits += 1

    def run(
        self,
        stop: threading.Event,
        *,
        exit_when_idle_s: float | None = None,
        batch_size: int = 5000,
        batch_interval_s: float = 2.0,
    ) -> IngestStats:
        """Consume until ``stop`` is set (or, with ``exit_when_idle_s``, once nothing came for that long after
        the group gave this consumer its partitions: joining a group takes seconds, and is not idleness).

        A batch is sent and committed once it holds ``batch_size`` records or its first record is
        ``batch_interval_s`` old: each batch's delivery costs a producer's start and flush (about 0.5 s on
        the test broker), so batches are filled rather than sent per poll."""
        assigned: list[float] = []

        def on_assign(consumer: Any, partitions: list[Any]) -> None:
            assigned.append(time.monotonic())

        self._consumer.subscribe([self.topic], on_assign=on_assign)
        batch: list[Any] = []
        first = quiet_since = 0.0  # when the batch in hand began; when something last arrived
        try:
            while not stop.is_set():
                messages = self._consumer.consume(batch_size - len(batch), 0.2)
                now = time.monotonic()
                if messages:
                    first = first if batch else now
                    batch += messages
                    quiet_since = now
                # A poll that brings nothing sends what is in hand: a trickle is not held for the interval.
                if batch and (len(batch) >= batch_size or now - first >= batch_interval_s or not messages):
                    self.process(batch)
                    batch = []
                elif (
                    not messages
                    and exit_when_idle_s is not None
                    and assigned
                    and now - max(quiet_since, assigned[-1]) >= exit_when_idle_s
                ):
                    break
            if batch:
                self.process(batch)
        finally:
            self._consumer.close()
        return self.stats
