"""Upstream broker behaviour we design around. If this test fails, Tansu changed: revisit docs/broker.md."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.conftest import selected_backend
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, create_topic


def test_high_watermark_is_not_a_record_count(kafka: Endpoint) -> None:
    if selected_backend() != "native":
        pytest.skip("the quirk is Tansu's; real Kafka reports record counts")
    topic = create_topic(kafka.bootstrap, f"quirk-{uuid.uuid4().hex[:8]}")
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 100})
    for batch in range(2):
        for i in range(10):
            producer.produce(topic, f"{batch}-{i}".encode())
        producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"q-{uuid.uuid4()}"})
    _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.close()
    records = consume(kafka.bootstrap, topic, expected=20, idle=1.0)
    assert len(records) == 20
    assert high != 20, "Tansu now reports true high watermarks: the idle-timeout workarounds may go"
    assert high == 11, "the last batch's base offset + 1"
