"""A sink of derived records to a Kafka topic (JSON), so the pipeline is observable without ClickHouse.

Each message: key = the record's key joined with ``|``, value = ``{"kind", "record"}`` as JSON, header
``jobprov-state-version``. Compacting the topic by key (where the broker applies compaction) keeps the last
record per key; readers keep the highest ``state_version`` per key, which also covers redeliveries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from jobprov.emitters.kafka import producer_config
from jobprov.errors import ConfigError, SinkError
from jobprov.sinks.base import SinkBackpressure
from jobprov.stream_processors.records import Record, to_json_dict


class KafkaTopicSink:
    name = "kafka-topic"

    def __init__(self, bootstrap: str, topic: str, kafka_config: Mapping[str, str] | None = None) -> None:
        """``kafka_config``: librdkafka security properties (``ProcessorSettings.kafka_config()``)."""
        self.topic = topic
        self._errors: list[str] = []
        config = producer_config(bootstrap, 30000, kafka_config or {})
        config["client.id"] = "jobprov-sink"
        config["on_delivery"] = self._on_delivery
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ConfigError("kafka", f"librdkafka rejected the configuration: {exc}") from exc
        self.written = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            value = json.dumps(to_json_dict(record), separators=(",", ":")).encode()
            key = "|".join(record.key()).encode()
            headers: list[tuple[str, str | bytes | None]] = [
                ("jobprov-state-version", str(record.state_version).encode())
            ]
            while True:
                try:
                    self._producer.produce(self.topic, value, key, headers=headers)
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self.written += 1
        self._producer.poll(0)

    def flush(self, timeout: float) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise SinkBackpressure(f"{remaining} derived records not acknowledged within {timeout}s", 1.0)
        if self._errors:
            errors, self._errors = self._errors, []
            raise SinkError(f"derived records failed: {'; '.join(sorted(set(errors))[:3])}")

    def detach(self) -> KafkaTopicSink:
        """The producer sends as records are written: flushing it makes what was detached durable (and what was
        written since, which is no harm)."""
        return self

    def close(self) -> None:
        self._producer.flush(5)
