"""Kafka transport: confluent-kafka, idempotent, acks=all, keyed by job id so a job's events stay ordered.

Nothing here blocks the job: ``produce`` only queues. An event the broker does not acknowledge within
``delivery_timeout_ms``, or that is still queued when the job exits, goes to the fallback (the spool).
While every broker is down, new events skip the queue and go straight to the fallback; every few seconds one
is let through to probe whether the broker is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from jobprov.emitters.base import DeliveryReport, Framed, Transport
from jobprov.errors import ConfigError

log = logging.getLogger("jobprov.kafka")


class _DebugOnly(logging.LoggerAdapter[logging.Logger]):
    """librdkafka reports every refused connection as an error; for a job that is noise, not news.
    The emitter says once, on stderr, what it could not deliver; the details stay at debug level."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


_librdkafka_log = _DebugOnly(log, {})

PROBE_INTERVAL_S = 5.0
QUEUE_FULL_WAIT_S = 1.0
_BROKER_DOWN = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}


def parse_kafka_url(url: str) -> tuple[str, str]:
    """``kafka://host:port[,host:port]/topic`` -> (bootstrap servers, topic)."""
    parts = urlsplit(url)
    topic = parts.path.strip("/")
    if parts.scheme != "kafka" or not parts.netloc or not topic or "/" in topic:
        raise ConfigError("url", f"{url!r}: expected kafka://host:port[,host:port]/topic")
    return parts.netloc, topic


def producer_config(
    bootstrap: str, delivery_timeout_ms: int, security: Mapping[str, str], linger_ms: int = 5
) -> dict[str, Any]:
    """``security``: the librdkafka security properties (``kafka_client_config`` of the settings)."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "jobprov-emitter",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": delivery_timeout_ms,
        # librdkafka would print connection errors on the job's stderr; route them to our logger instead.
        "logger": _librdkafka_log,
        **security,
    }


class KafkaTransport:
    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        fallback: Transport | None,
        delivery_timeout_ms: int = 30000,
        linger_ms: int = 5,
        security: dict[str, str] | None = None,
    ) -> None:
        self.topic = topic
        self._fallback = fallback
        self._report = DeliveryReport()
        self._down_until = 0.0
        self._produced = 0
        self._failed = 0
        config = producer_config(bootstrap, delivery_timeout_ms, security or {}, linger_ms)
        config["error_cb"] = self._on_error
        config["on_delivery"] = self._on_delivery
        # A Python callback per acknowledged event cost as much as producing it: only failures call back,
        # and what was delivered is what was produced less what failed (counted at close, once flushed).
        config["delivery.report.only.error"] = True
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _BROKER_DOWN:
            self._down_until = time.monotonic() + PROBE_INTERVAL_S
        log.debug("kafka error: %s", err)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        self._failed += 1
        key = msg.key()
        self._hand_off([Framed(key.decode() if key else "", msg.value() or b"", "")], str(err))

    def _hand_off(self, batch: list[Framed], reason: str) -> None:
        if self._fallback is None:
            self._report.lost += len(batch)
            self._report.errors.append(f"{len(batch)} events undeliverable and no spool: {reason}")
            return
        self._fallback.send(batch)

    def send(self, batch: list[Framed]) -> None:
        if self._down_until and time.monotonic() < self._down_until and self._fallback is not None:
            # Let the first event through as a probe; the rest go to the spool while the broker is down.
            self._produce(batch[:1])
            self._hand_off(batch[1:], "broker down")
        else:
            self._produce(batch)
        self._producer.poll(0)

    def _produce(self, batch: list[Framed]) -> None:
        produce = self._producer.produce
        topic = self.topic
        waited_until = time.monotonic() + QUEUE_FULL_WAIT_S
        i = 0
        try:
            while i < len(batch):
                item = batch[i]
                try:
                    produce(topic, item.value, item.key)
                    i += 1
                except BufferError:
                    # librdkafka's queue is full. A burst drains in moments; a slow broker does not: then
                    # spool the rest rather than wait (this may run on the job's thread under backpressure).
                    if time.monotonic() >= waited_until:
                        self._hand_off(batch[i:], "producer queue full")
                        return
                    self._producer.poll(0.05)
                except KafkaException as exc:
                    self._hand_off(batch[i:], str(exc))
                    return
        finally:
            self._produced += i

    def poll(self) -> None:
        if self._producer is not None:
            self._producer.poll(0)

    def close(self, timeout: float) -> DeliveryReport:
        deadline = time.monotonic() + timeout
        remaining = len(self._producer)
        # Flush in short slices so a broker known to be down does not hold the job for the whole timeout.
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
            if remaining and self._down_until and time.monotonic() < self._down_until:
                break
        if remaining:
            # Give up waiting: purged messages come back through on_delivery with an error and are spooled.
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            settle_until = time.monotonic() + 0.5  # purged requests still in flight report back in moments
            while self._producer.flush(0.05) and time.monotonic() < settle_until:
                pass
            self._producer.poll(0)
        unresolved = len(self._producer)
        # Drop the handle: a live librdkafka client keeps reconnecting and asking for metadata, which makes
        # some brokers auto-create the topic behind the operator's back.
        self._producer = None  # type: ignore[assignment]
        report = DeliveryReport(delivered=self._produced - self._failed - unresolved, lost=self._report.lost)
        report.errors.extend(self._report.errors)
        if unresolved:
            report.lost += unresolved
            report.errors.append(f"{unresolved} events neither acknowledged nor returned by the broker client")
        if self._fallback is not None:
            report.merge(self._fallback.close(max(0.0, deadline - time.monotonic())))
        return report
