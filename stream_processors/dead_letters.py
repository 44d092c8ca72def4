"""Dead letters: messages that could not be decoded or folded, kept with the reason and where they came from.

Each goes to the dead-letter topic as it was (the original bytes), with headers ``jobprov-reason`` (a small
fixed set: undecodable, unknown_schema, fold_error), ``jobprov-detail``, ``jobprov-source-topic``,
``jobprov-source-partition`` and ``jobprov-source-offset``. Nothing is coerced to make it fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from jobprov.emitters.kafka import producer_config
from jobprov.errors import ConfigError, SinkError

_DETAIL_LIMIT = 1000


class DeadLetters(Protocol):
    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None: ...

    def flush(self, timeout: float) -> None: ...


class FanOut:
    """Dead letters to several places (the topic, and the store's table when there is one)."""

    def __init__(self, *targets: DeadLetters) -> None:
        self.targets = targets

    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None:
        for target in self.targets:
            target.send(value, reason, detail, topic, partition, offset)

    def flush(self, timeout: float) -> None:
        for target in self.targets:
            target.flush(timeout)


class DeadLetterTopic:
    """``kafka_config``: librdkafka security properties (``ProcessorSettings.kafka_config()``)."""

    def __init__(self, bootstrap: str, topic: str, kafka_config: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self._errors: list[str] = []
        config = producer_config(bootstrap, 30000, kafka_config or {})
        config["client.id"] = "jobprov-dead-letters"
        config["on_delivery"] = self._on_delivery
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            ("jobprov-reason", reason.encode()),
            ("jobprov-detail", detail[:_DETAIL_LIMIT].encode()),
            ("jobprov-source-topic", topic.encode()),
            ("jobprov-source-partition", str(partition).encode()),
            ("jobprov-source-offset", str(offset).encode()),
        ]
        self._producer.produce(self.topic, value, headers=headers)
        self.sent += 1

    def flush(self, timeout: float) -> None:
        if self._producer.flush(timeout):
            raise SinkError(f"dead letters not acknowledged within {timeout}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise SinkError(f"dead letters failed: {'; '.join(sorted(set(errors))[:3])}")
