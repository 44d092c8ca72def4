"""Nothing lost, nothing twice: faults injected into `jobprov up` while jobs emit, then every event counted.

Each test runs emitter processes (each a handful of jobs recording numbered metric points through the public
Python API, spooling when the broker is away), injects one fault mid-stream (SIGKILL of `jobprov up`; a graceful
stop; a broker restart under a separately run worker), lets everything settle (a restart, a spool drain) and
counts in the store: every job succeeded with exactly its points, every event stored once (sent = stored, 0
duplicates), the fold counted each event once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.test_up import JOBPROV, Up

JOBS_PER_EMITTER = 3
POINTS = 40
EMITTERS = 6

# One emitter process: jobs PREFIX-0..N-1, each POINTS metric points 0..POINTS-1 with a pause between them, so
# the fault lands while jobs are open and events are in flight.
EMITTER = """
import sys, time, jobprov
prefix, jobs, points, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for j in range(jobs):
    with jobprov.job(name="soak", job_id=f"{prefix}-{j}", provenance={"dataset": "hsc"}) as job:
        for i in range(points):
            job.metric("load", float(i), tags={"i": i})
            time.sleep(pause)
"""

# Counted in the store (a separate process: the engine opens one store per process).
COUNT = """
import json, sys
from jobprov.sinks.clickhouse.client import connect
c = connect(sys.argv[1])
q = lambda sql: c.query(sql).result_rows
print(json.dumps({
    "jobs": {r[0]: [r[1], r[2]] for r in q("SELECT job_id, status, event_count FROM jobprov.jobs FINAL")},
    "events": {r[0]: r[1] for r in q("SELECT job_id, count() FROM jobprov.events FINAL GROUP BY job_id")},
    "metric_events": q("SELECT count(), uniqExact(event_id) FROM jobprov.events FINAL "
                       "WHERE event_type = 'MetricMeasured'")[0],
    "points": {r[0]: sorted(r[1]) for r in q("SELECT job_id, groupArray(value) FROM jobprov.metric_points FINAL "
                                             "WHERE metric = 'load' GROUP BY job_id")},
    "buckets": {r[0]: r[1] for r in q("SELECT job_id, groupUniqArray(bucket) FROM jobprov.metric_points FINAL "
                                      "WHERE metric = 'load' GROUP BY job_id")},
}))
"""


def _emitters(up: Up, spool: Path, tag: str, pause: float) -> list[subprocess.Popen[bytes]]:
    env = {**up.env, "JOBPROV_SPOOL_DIR": str(spool)}
    return [
        subprocess.Popen(
            [sys.executable, "-c", EMITTER, f"{tag}{n}", str(JOBS_PER_EMITTER), str(POINTS), str(pause)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(EMITTERS)
    ]


def _finish(emitters: list[subprocess.Popen[bytes]]) -> None:
    for proc in emitters:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()


def _drain(up: Up, spool: Path) -> None:
    if spool.exists():
        env = {**up.env, "JOBPROV_SPOOL_DIR": str(spool)}
        subprocess.run([*JOBPROV, "spool", "drain", "--timeout", "60"], env=env, check=True, capture_output=True)


def _counts(home: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", COUNT, f"chdb://{home / 'store'}"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def _settled(up: Up, tags: str) -> dict[str, object]:
    """Wait until every job of every emitter succeeded in the service, then stop it and count in its store."""
    expected = EMITTERS * JOBS_PER_EMITTER
    counts = up.wait_for_jobs(expected, timeout=120)
    deadline = time.monotonic() + 60
    while counts.get("succeeded", 0) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        counts = up.wait_for_jobs(expected)
    assert up.stop() == 0
    return _counts(up.home)


def _assert_nothing_lost_nothing_twice(found: dict[str, object], tags: str) -> None:
    ids = {f"{t}{n}-{j}" for t in tags for n in range(EMITTERS) for j in range(JOBS_PER_EMITTER)}
    jobs = dict(found["jobs"])  # type: ignore[call-overload]
    assert set(jobs) == ids, f"missing {sorted(ids - set(jobs))}"
    assert {status for status, _ in jobs.values()} == {"succeeded"}
    points = dict(found["points"])  # type: ignore[call-overload]
    assert all(points[job] == [float(i) for i in range(POINTS)] for job in ids), "each point once, none missing"
    stored, distinct = found["metric_events"]  # type: ignore[misc]
    assert stored == distinct == len(ids) * POINTS, "sent = stored, 0 duplicates"
    events = dict(found["events"])  # type: ignore[call-overload]
    assert all(jobs[job][1] == events[job] for job in ids), "the fold counted every stored event once"


def test_sigkill_of_up_while_jobs_emit_loses_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = Up(tmp_path / "home").start()
    assert first.proc is not None
    emitters = _emitters(first, spool, "k", pause=0.02)
    time.sleep(2.0)  # mid-stream: jobs open, points in flight, some folded
    assert all(proc.poll() is None for proc in emitters), "the fault must land while the jobs run"
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    _finish(emitters)  # with the broker gone they spool what they could not send

    second = Up(first.home)
    second.kafka_port, second.env = first.kafka_port, first.env  # same port: no emitter configuration changes
    second.start()
    _drain(second, spool)
    _assert_nothing_lost_nothing_twice(_settled(second, "k"), "k")


def test_a_graceful_stop_while_jobs_emit_loses_nothing(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = Up(tmp_path / "home").start()
    emitters = _emitters(first, spool, "g", pause=0.02)
    time.sleep(2.0)
    assert first.proc is not None and all(proc.poll() is None for proc in emitters)
    first.proc.send_signal(signal.SIGINT)  # Ctrl-C, while emitters keep sending
    assert first.proc.wait(timeout=60) == 0
    _finish(emitters)

    second = Up(first.home)
    second.kafka_port, second.env = first.kafka_port, first.env
    second.start()
    _drain(second, spool)
    _assert_nothing_lost_nothing_twice(_settled(second, "g"), "g")


def test_the_memory_log_is_a_choice_that_says_what_it_risks(tmp_path: Path) -> None:
    up = Up(tmp_path / "home")
    out = subprocess.run(
        [*JOBPROV, "up", "--broker-log", "nowhere"], env=up.env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "'nowhere' is not one of 'durable', 'memory'" in out.stderr
    help_text = subprocess.run([*JOBPROV, "up", "--help"], env=up.env, capture_output=True, text=True).stdout
    assert "lost if the service dies" in " ".join(help_text.split())
    assert os.environ.get("JOBPROV_HOME") != str(up.home)


def _folded(metrics_port: int) -> dict[str, float]:
    """The worker's ``jobprov_events_folded_total`` by event type."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = 'jobprov_events_folded_total{event_type="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_a_broker_restart_under_a_separate_worker_changes_no_output(tmp_path: Path) -> None:
    """The parts run separately (a durable broker, `jobprov process`, emitters): the broker is killed and started
    again mid-job. Its log and the group's offsets survive, the worker reconnects and keeps its jobs' state, the
    emitters spool what the broker could not take meanwhile: every job ends succeeded, in its own bucket, once."""
    from jobprov.embedded.durable import DurableBroker
    from jobprov.embedded.tansu import free_port

    broker = DurableBroker(free_port(), tmp_path / "broker").start()
    up = Up(tmp_path / "home")  # for its environment: emitters reach this broker
    up.env["JOBPROV_URL"] = broker.url("jobprov.events")
    metrics_port = free_port()
    store = f"chdb://{up.home / 'store'}"
    up.home.mkdir(parents=True)
    worker = subprocess.Popen(
        [
            *JOBPROV,
            "process",
            "--source",
            broker.url("jobprov.events"),
            "--sink",
            store,
            "--partitions",
            "2",
            "--metrics-port",
            str(metrics_port),
        ],
        env=up.env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )
    spool = tmp_path / "spool"
    try:
        emitters = _emitters(up, spool, "b", pause=0.03)
        time.sleep(3.0)
        assert all(proc.poll() is None for proc in emitters), "the restart must land while the jobs run"
        broker.stop(kill=True)
        time.sleep(1.0)  # emitters and the worker see the broker gone
        broker = DurableBroker(broker.port, tmp_path / "broker").start()
        _finish(emitters)
        _drain(up, spool)
        # Every event was sent before this: wait until the worker folded at least every point and every job's end
        # (a redelivery may count twice here; the store is counted exactly below), then let it flush.
        deadline = time.monotonic() + 120
        jobs = EMITTERS * JOBS_PER_EMITTER
        while True:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker fell behind or died"
            folded = _folded(metrics_port)
            if folded.get("MetricMeasured", 0) >= jobs * POINTS and folded.get("JobFinished", 0) >= jobs:
                break
            time.sleep(0.5)
        time.sleep(2.0)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=60)
        broker.stop()
    found = _counts(up.home)
    _assert_nothing_lost_nothing_twice(found, "b")
    buckets = dict(found["buckets"])  # type: ignore[call-overload]
    assert {len(b) for b in buckets.values()} == {1}, f"each job's points in one bucket: {buckets}"
    assert len({b[0] for b in buckets.values()}) == 1, f"the one bucket of their provenance: {buckets}"


def test_the_durable_log_is_trimmed_below_the_committed_offsets_only(tmp_path: Path) -> None:
    """Committed batches older than the keep window leave the log; a batch holding the committed offset, and
    everything after it, stay (read back in full after a restart); uncommitted or recent batches stay."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    from jobprov.embedded.durable import DurableBroker
    from jobprov.embedded.tansu import free_port
    from jobprov.embedded.trim import LogTrimmer

    broker = DurableBroker(free_port(), tmp_path / "broker").start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        [f.result() for f in admin.create_topics([NewTopic("t", 1, 1)]).values()]
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
        for batch in range(20):  # 20 batch objects of 5 records: bases 0, 5, ..., 95
            for i in range(5):
                producer.produce("t", f"{batch * 5 + i}".encode())
            producer.flush(10)
        trimmer = LogTrimmer(broker.store, broker.bootstrap, "t", "workers", keep_s=3600.0)
        bases = [base for base, _ in trimmer.batches(0)]
        assert bases[0] == 0 and bases == sorted(bases) and len(bases) >= 20 and bases[-1] < 100, "Tansu's layout"
        assert trimmer.trim_once() == 0, "nothing committed: nothing trimmed"
        # The committed offset falls inside a batch of the second half (its first record is before it).
        holding = next(i for i in range(len(bases) // 2, len(bases) - 1) if bases[i + 1] - bases[i] >= 2)
        offset = bases[holding] + 1

        group = {"bootstrap.servers": broker.bootstrap, "group.id": "workers", "enable.auto.commit": False}
        consumer = Consumer(group)
        consumer.commit(offsets=[TopicPartition("t", 0, offset)], asynchronous=False)
        consumer.close()
        assert trimmer.trim_once() == 0, "committed but recent: kept for the window"
        assert trimmer.trim_once(now=time.time() + 7200) == holding, "the batches before the one holding it"
        assert [base for base, _ in trimmer.batches(0)] == bases[holding:]
    finally:
        broker.stop(kill=True)

    broker = DurableBroker(broker.port, tmp_path / "broker").start()
    try:
        consumer = Consumer({**group, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        consumer.subscribe(["t"])
        values: list[int] = []
        deadline = time.monotonic() + 60
        while len(values) < 100 - offset and time.monotonic() < deadline:
            values += [int(m.value()) for m in consumer.consume(100, 0.5) if not m.error()]
        consumer.close()
        assert values == list(range(offset, 100)), "the group resumes at its offset with nothing missing"
    finally:
        broker.stop()
