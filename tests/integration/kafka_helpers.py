"""Talking to the test broker with plain confluent-kafka clients (never through jobprov's own code)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from jobprov.schemas.models import Event
from jobprov.schemas.wire import decode_event


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        future.result(timeout=10)
    return name


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 30.0, idle: float = 3.0) -> list[Any]:
    """Read the topic from the beginning until ``expected`` records arrived, or nothing came for ``idle``
    seconds after that (to catch extras), or ``timeout``. Never uses watermarks (Tansu counts batches)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                if len(messages) >= expected and time.monotonic() - last > idle:
                    break
                continue
            if msg.error():
                continue
            messages.append(msg)
            last = time.monotonic()
    finally:
        consumer.close()
    return messages


def events_of(messages: list[Any]) -> list[Event]:
    return [decode_event(m.value()) for m in messages]
