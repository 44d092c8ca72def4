"""The worker on a real broker: folds, dead-letters garbage, survives SIGKILL, scales to 2 workers, rebalances."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from jobprov.emitters.emitter import create_emitter
from jobprov.emitters.job import Job
from jobprov.schemas.wire import decode_event
from jobprov.settings import EmitterSettings
from jobprov.stream_processors.metrics import scrape_sum
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, create_topic
from tests.integration.processing import Collector, expected_from_raw, latest_by_key, records_of, start_worker, stop

Settings = Callable[..., EmitterSettings]


def _topics(kafka: Endpoint, partitions: int) -> str:
    topic = f"events-{uuid.uuid4().hex[:10]}"
    create_topic(kafka.bootstrap, topic, partitions)
    create_topic(kafka.bootstrap, f"{topic}.derived", partitions)
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    return topic


def _emit_jobs(url: str, settings_for: Settings, jobs: int, metrics: int = 5, seed: int = 0) -> None:
    rng = random.Random(seed)
    emitter = create_emitter(settings_for(url))
    for i in range(jobs):
        dataset = rng.choice(["testdata_hsc", "testdata_cfht"])
        with Job(name=f"job{i}", provenance={"dataset": dataset, "band": rng.choice("ri")}, emitter=emitter) as job:
            job.used(f"file:///raw/{i}.fits")
            with job.step("measure"):
                for _ in range(metrics):
                    job.metric(rng.choice(["AM1", "PA1"]), rng.gauss(10, 1), unit="mas")
            job.produced(f"file:///out/{i}.parq")
            job.annotate("reviewed", "yes")
    assert emitter.close().delivered > 0


def _wait_until_equal(collector: Collector, expected: dict[Any, Any], timeout: float) -> dict[Any, Any]:
    deadline = time.monotonic() + timeout
    got: dict[Any, Any] = {}
    while time.monotonic() < deadline:
        collector.poll_for(2.0)
        got = latest_by_key(records_of(collector.messages))
        if got == expected:
            return got
    return got


def test_worker_folds_the_log_and_dead_letters_fuzz(kafka: Endpoint, settings_for: Settings, tmp_path: Path) -> None:
    # One partition: a flipped bit can leave an event's id intact and change its content; which of two such
    # "duplicates" is folded first then depends on the order across partitions, which no test can fix.
    topic = _topics(kafka, 1)
    _emit_jobs(f"kafka://{kafka.bootstrap}/{topic}", settings_for, jobs=10)
    valid = [m.value() for m in consume(kafka.bootstrap, topic, expected=1, idle=2)]
    rng = random.Random(7)
    fuzz: list[bytes] = [rng.randbytes(rng.randint(0, 300)) for _ in range(1500)]
    for _ in range(500):
        data = rng.choice(valid)
        fuzz.append(data[: rng.randint(0, len(data) - 1)])  # truncated
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        fuzz.append(bytes(flipped))  # one bit flipped: may still decode, then it is a real event
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "log_level": 0})
    for i, data in enumerate(fuzz):
        producer.produce(topic, data, f"fuzz-{i % 7}")
    assert producer.flush(30) == 0
    undecodable = 0
    for data in fuzz:
        try:
            decode_event(data)
        except Exception:
            undecodable += 1
    assert undecodable > 1500, "most fuzz must be undecodable"

    expected, expected_dead = expected_from_raw(consume(kafka.bootstrap, topic, expected=len(valid) + len(fuzz)))
    assert expected_dead >= undecodable
    derived = Collector(kafka.bootstrap, f"{topic}.derived")
    worker = start_worker(kafka.bootstrap, topic, 1, tmp_path)
    try:
        got = _wait_until_equal(derived, expected, timeout=120)
        assert got == expected
        dead = consume(kafka.bootstrap, f"{topic}.dlq", expected=expected_dead, idle=2)
        assert len(dead) == expected_dead
        headers = [dict(m.headers()) for m in dead]
        assert {h["jobprov-reason"] for h in headers} <= {b"undecodable", b"unknown_schema", b"fold_error"}
        positions = {(h["jobprov-source-partition"], h["jobprov-source-offset"]) for h in headers}
        assert len(positions) == expected_dead, "each dead letter names its own source position"
        assert worker.poll() is None, "the worker kept going"
    finally:
        stop(worker)
        derived.close()


def test_sigkill_mid_stream_then_restart_gives_the_uninterrupted_result(
    kafka: Endpoint, settings_for: Settings, tmp_path: Path
) -> None:
    topic = _topics(kafka, 2)
    url = f"kafka://{kafka.bootstrap}/{topic}"
    _emit_jobs(url, settings_for, jobs=60, metrics=20, seed=1)
    derived = Collector(kafka.bootstrap, f"{topic}.derived")
    worker = start_worker(kafka.bootstrap, topic, 2, tmp_path, "first")
    try:
        deadline = time.monotonic() + 60
        while len(derived.messages) < 50:
            assert time.monotonic() < deadline, "the worker produced nothing"
            derived.poll_for(0.2)
        stop(worker, kill=True)
        _emit_jobs(url, settings_for, jobs=30, metrics=20, seed=2)  # more work arrives while it is down
        expected, _ = expected_from_raw(consume(kafka.bootstrap, topic, expected=1, idle=2))
        worker = start_worker(kafka.bootstrap, topic, 2, tmp_path, "second")
        assert _wait_until_equal(derived, expected, timeout=120) == expected
    finally:
        stop(worker)
        derived.close()


def test_two_workers_on_two_partitions_match_one(kafka: Endpoint, settings_for: Settings, tmp_path: Path) -> None:
    topic = _topics(kafka, 2)
    _emit_jobs(f"kafka://{kafka.bootstrap}/{topic}", settings_for, jobs=40, seed=3)
    expected, _ = expected_from_raw(consume(kafka.bootstrap, topic, expected=1, idle=2))
    derived = Collector(kafka.bootstrap, f"{topic}.derived")
    workers = [start_worker(kafka.bootstrap, topic, 2, tmp_path, name) for name in ("a", "b")]
    try:
        assert _wait_until_equal(derived, expected, timeout=120) == expected
        assert all(w.poll() is None for w in workers)
        jobs_by_partition: dict[int, set[str]] = {}
        for msg in derived.messages:
            jobs_by_partition.setdefault(msg.partition(), set()).add(msg.key().decode().split("|")[0])
        assert len(jobs_by_partition) == 2
    finally:
        for w in workers:
            stop(w)
        derived.close()


def test_a_worker_joining_while_jobs_are_open_changes_no_output(
    kafka: Endpoint, settings_for: Settings, tmp_path: Path
) -> None:
    """A rebalance mid-job: the first worker folds the first half of open jobs, a second joins (the first hands
    one partition over: flush, commit, forget those jobs; the second rebuilds them from the log up to the
    committed offset), the jobs go on and finish. The outputs equal one worker's fold of the whole log."""
    topic = _topics(kafka, 2)
    emitter = create_emitter(settings_for(f"kafka://{kafka.bootstrap}/{topic}"))
    jobs = [
        Job(name=f"open{i}", provenance={"dataset": "hsc", "band": "ri"[i % 2]}, emitter=emitter) for i in range(16)
    ]
    for job in jobs:
        job.__enter__()
        job.metric("AM1", 10.0 + len(job.job_id) % 3, unit="mas")
    assert emitter.flush(30)
    derived = Collector(kafka.bootstrap, f"{topic}.derived")
    first = start_worker(kafka.bootstrap, topic, 2, tmp_path, "a")
    workers = [first]
    try:
        _wait_for_metric(first, 'jobprov_events_folded_total{event_type="MetricMeasured"}', len(jobs), timeout=90)
        workers.append(start_worker(kafka.bootstrap, topic, 2, tmp_path, "b"))
        deadline = time.monotonic() + 90
        while "assigned " not in (tmp_path / "worker-b.log").read_text():  # the rebalance happened
            assert time.monotonic() < deadline and workers[1].poll() is None, "the second worker got no partition"
            time.sleep(0.5)
        assert "revoked " in (tmp_path / "worker-a.log").read_text(), "the first handed a partition over"
        for job in jobs:
            job.metric("AM1", 11.0, unit="mas")
            job.annotate("reviewed", "yes")
            job.__exit__(None, None, None)
        assert emitter.close().delivered > 0
        expected, _ = expected_from_raw(consume(kafka.bootstrap, topic, expected=1, idle=2))
        assert _wait_until_equal(derived, expected, timeout=120) == expected
        assert all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            stop(w)
        derived.close()


def test_worker_exports_prometheus_metrics(kafka: Endpoint, settings_for: Settings, tmp_path: Path) -> None:
    topic = _topics(kafka, 1)
    _emit_jobs(f"kafka://{kafka.bootstrap}/{topic}", settings_for, jobs=3)
    worker = start_worker(kafka.bootstrap, topic, 1, tmp_path)
    try:
        _wait_for_metric(worker, 'jobprov_events_folded_total{event_type="JobFinished"}', 3, timeout=90)
        # The gauges are set once the batch is durable, a moment after the counters.
        _wait_for_metric(worker, 'jobprov_jobs{status="succeeded"}', 3, timeout=30)
        assert _metric(worker, 'jobprov_jobs{status="succeeded"}') == 3
        assert _metric(worker, "jobprov_fold_batch_seconds_count") >= 1
        assert _metric(worker, 'jobprov_dead_letters_total{reason="undecodable"}') == 0
    finally:
        stop(worker)


def _metric(worker: Any, line_prefix: str) -> float:
    return scrape_sum(worker.metrics_port, line_prefix)


def _wait_for_metric(worker: Any, line_prefix: str, at_least: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _metric(worker, line_prefix) < at_least:
        assert worker.poll() is None, "the worker died"
        assert time.monotonic() < deadline, f"{line_prefix} never reached {at_least}"
        time.sleep(0.5)


def test_worker_into_clickhouse_survives_sigkill_without_duplicates(
    kafka: Endpoint, settings_for: Settings, tmp_path: Path
) -> None:
    from tests.integration.processing import query_store

    topic = _topics(kafka, 2)
    url = f"kafka://{kafka.bootstrap}/{topic}"
    store = tmp_path / "store"
    _emit_jobs(url, settings_for, jobs=30, metrics=10, seed=5)
    worker = start_worker(kafka.bootstrap, topic, 2, tmp_path, "first", sink_url=f"chdb://{store}")
    try:
        _wait_for_metric(worker, "jobprov_events_folded_total{", 1, timeout=90)
    finally:
        stop(worker, kill=True)  # mid-stream, or just after: either way uncommitted work is redone
    _emit_jobs(url, settings_for, jobs=20, metrics=10, seed=6)
    messages = consume(kafka.bootstrap, topic, expected=1, idle=2)
    expected, _ = expected_from_raw(messages)
    jobs_expected = sorted((r.job_id, r.status, r.event_count) for k, r in expected.items() if k[0] == "job_state")
    worker = start_worker(kafka.bootstrap, topic, 2, tmp_path, "second", sink_url=f"chdb://{store}")
    try:
        _wait_for_metric(worker, 'jobprov_jobs{status="succeeded"}', len(jobs_expected), timeout=120)
    finally:
        stop(worker)  # the worker owns the store; read it once it has let go
    assert query_store(store, "SELECT count() FROM jobprov.events FINAL")[0][0] == len(messages)
    metrics_expected = sum(1 for k in expected if k[0] == "metric_point")
    assert query_store(store, "SELECT count() FROM jobprov.metric_points FINAL")[0][0] == metrics_expected
    jobs = query_store(store, "SELECT job_id, status, event_count FROM jobprov.jobs FINAL ORDER BY job_id")
    assert [tuple(j) for j in jobs] == jobs_expected
