"""The processor's Kafka clients configured through the security settings, on the real broker.

The local broker speaks PLAINTEXT only (no SASL, no TLS listener), so this shows that an explicit
``kafka_security_protocol=PLAINTEXT`` reaches every confluent-kafka client of the processor and still works
end to end: topic creation, a dead letter, the partition-rebuild read and replay from a topic. SASL and TLS are
covered at the configuration level (tests/unit/stream_processors/test_kafka_security.py).
"""

from __future__ import annotations

import uuid

from jobprov.emitters.kafka import parse_kafka_url
from jobprov.settings import load_processor_settings
from jobprov.stream_processors.dead_letters import DeadLetterTopic
from jobprov.stream_processors.replay import from_topic
from jobprov.stream_processors.worker import ensure_topics, read_prefix
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume


def test_explicit_plaintext_end_to_end(kafka: Endpoint) -> None:
    suffix = uuid.uuid4().hex[:10]
    settings = load_processor_settings(
        {
            "source_url": kafka.url(f"events-{suffix}"),
            "dead_letter_topic": f"dead-{suffix}",
            "kafka_security_protocol": "PLAINTEXT",
            "topic_replication_factor": 1,
        },
        env={},
    )
    config = settings.kafka_config()
    assert config == {"security.protocol": "PLAINTEXT"}
    bootstrap, events = parse_kafka_url(settings.source_url)

    ensure_topics(
        bootstrap,
        {events: 2, settings.dead_letter_topic: 1},
        config,
        replication_factor=settings.topic_replication_factor,
    )
    # Again: existing topics are fine.
    ensure_topics(bootstrap, {events: 2}, config, replication_factor=settings.topic_replication_factor)

    dead = DeadLetterTopic(bootstrap, settings.dead_letter_topic, config)
    payloads = [f"not an event {i}".encode() for i in range(5)]
    for offset, value in enumerate(payloads):
        dead.send(value, "undecodable", "test", events, 1, offset)
    dead.flush(30)
    assert dead.sent == len(payloads)

    got = consume(bootstrap, settings.dead_letter_topic, expected=len(payloads), idle=1)
    assert [m.value() for m in got] == payloads
    assert dict(got[0].headers())["jobprov-reason"] == b"undecodable"

    rebuilt = list(read_prefix(bootstrap, settings.dead_letter_topic, 0, 3, config))
    assert [(r.value, r.partition, r.offset) for r in rebuilt] == [(payloads[i], 0, i) for i in range(3)]

    replayed = list(from_topic(bootstrap, settings.dead_letter_topic, idle_timeout_s=2, kafka_config=config))
    assert [r.value for r in replayed] == payloads
