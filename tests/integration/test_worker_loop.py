"""The consumer loop itself, in this process, on the real broker and the real engine: a store that pushes back
pauses the partitions (nothing lost, nothing doubled), offsets are committed once the records are durable, and a
stop hands everything over."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from jobprov.schemas.wire import encode_event
from jobprov.settings import load_processor_settings
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.sinks.clickhouse.state import ClickHouseStateStore
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor
from jobprov.stream_processors.worker import Worker
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import create_topic
from tests.integration.processing import ListDeadLetters
from tests.integration.test_clickhouse_sink import _count, _Flaky, _job


def _produce(bootstrap: str, topic: str, jobs: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    sent = 0
    for j in range(jobs):
        for event in _job(f"loop-{j:03d}", "hsc" if j % 2 else "cfht", [1.0, 2.0, 3.0]):
            producer.produce(topic, encode_event(event), event.job_id.encode())
            sent += 1
    assert producer.flush(30) == 0
    return sent


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def test_a_store_that_pushes_back_pauses_the_partitions_and_loses_nothing(kafka: Endpoint, store: Any) -> None:
    topic = create_topic(kafka.bootstrap, f"loop-{uuid.uuid4().hex[:10]}", partitions=2)
    sent = _produce(kafka.bootstrap, topic, jobs=40)
    group = f"loop-{uuid.uuid4().hex[:8]}"
    settings = load_processor_settings(
        {"source_url": kafka.url(topic), "app_id": group, "batch_size": 50, "session_timeout_s": 6.0},
        env={},
    )
    db = store.jobprov_database
    flaky = _Flaky(ClickHouseSink(store, db), failures=4)
    processor = Processor(flaky, ListDeadLetters(), FoldContext(), state_store=ClickHouseStateStore(store, db))
    worker = Worker(settings, processor)
    paused: list[bool] = []
    real_pause = worker.consumer.pause

    def pause(partitions: list[TopicPartition]) -> None:
        paused.append(bool(partitions))
        real_pause(partitions)

    worker.consumer = _Spy(worker.consumer, pause=pause)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while _count(store, "events") < sent:
            assert thread.is_alive(), "the loop died"
            assert time.monotonic() < deadline, f"{_count(store, 'events')} of {sent} events stored"
            time.sleep(0.3)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "stop() ends the loop"
    assert flaky.failures == 0 and paused and all(paused), "every failed flush paused the assigned partitions"
    assert _count(store, "events") == sent
    assert int(store.query(f"SELECT count() FROM {db}.events").result_rows[0][0]) == sent, "no event stored twice"
    assert _count(store, "jobs", "status = 'succeeded'") == 40
    assert _count(store, "metric_points") == 120
    # Every message is committed, and only now that it is durable: a new worker would start after them.
    assert _committed(kafka.bootstrap, group, topic, 2) == sent


class _Spy:
    """The consumer with one method replaced (confluent-kafka's classes cannot be patched)."""

    def __init__(self, inner: Consumer, **methods: Any) -> None:
        self._inner = inner
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        return self._methods.get(name) or getattr(self._inner, name)


class _Gated:
    """The real sink, whose first detached batch waits for ``gate`` before it is written; counts what the fold
    hands it meanwhile."""

    name = "gated"
    wants_events = True

    def __init__(self, inner: ClickHouseSink) -> None:
        self.inner = inner
        self.gate, self.writing = threading.Event(), threading.Event()
        self.written = 0
        self._first = True

    def write(self, records: Any) -> None:
        self.written += len(records)
        self.inner.write(records)

    def flush(self, timeout: float) -> None:
        self.inner.flush(timeout)

    def detach(self) -> Any:
        batch, first, self._first = self.inner.detach(), self._first, False
        return _GatedBatch(self, batch) if first else batch

    def close(self) -> None:
        self.inner.close()


class _GatedBatch:
    def __init__(self, gated: _Gated, inner: Any) -> None:
        self.gated, self.inner = gated, inner

    def flush(self, timeout: float) -> None:
        self.gated.writing.set()
        assert self.gated.gate.wait(60)
        self.inner.flush(timeout)


def test_the_worker_folds_while_a_flush_is_written_and_commits_it_once_durable(kafka: Endpoint, store: Any) -> None:
    topic = create_topic(kafka.bootstrap, f"loop-{uuid.uuid4().hex[:10]}", partitions=2)
    sent = _produce(kafka.bootstrap, topic, jobs=40)
    group = f"loop-{uuid.uuid4().hex[:8]}"
    settings = load_processor_settings(
        {"source_url": kafka.url(topic), "app_id": group, "batch_size": 50, "commit_max_events": 100,
         "session_timeout_s": 6.0},
        env={},
    )  # fmt: skip
    db = store.jobprov_database
    gated = _Gated(ClickHouseSink(store, db))
    processor = Processor(gated, ListDeadLetters(), FoldContext(), state_store=ClickHouseStateStore(store, db))
    worker = Worker(settings, processor)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert gated.writing.wait(60), "a flush was handed over"
        handed = gated.written
        deadline = time.monotonic() + 30
        while gated.written == handed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gated.written > handed, "the fold went on while the flush was being written"
        assert _committed(kafka.bootstrap, group, topic, 2) == 0, "nothing is committed before it is durable"
        gated.gate.set()
        deadline = time.monotonic() + 90
        while _committed(kafka.bootstrap, group, topic, 2) < sent:
            assert thread.is_alive(), "the loop died"
            assert time.monotonic() < deadline, f"{_committed(kafka.bootstrap, group, topic, 2)} of {sent} committed"
            time.sleep(0.3)
    finally:
        gated.gate.set()
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert _count(store, "events") == sent
    assert _count(store, "jobs", "status = 'succeeded'") == 40
