"""A small verification campaign through the real emitters, a real local broker, the stream processor and the
embedded ClickHouse engine.

Starts a Tansu broker, records two weeks of nightly jobs (datasets testdata_hsc and testdata_cfht, bands r and
all) with the Python API and `jobprov run`, including a software upgrade that shifts AM1 on one dataset, a
failed job and a job killed with SIGTERM; folds the log with `jobprov process` into an embedded ClickHouse
store; asks it for job statuses and for regressions with what changed; and finally shows a broker outage
covered by the spool.

Run it with `make demo`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer

import jobprov
from jobprov.embedded.tansu import free_port, start_broker
from jobprov.emitters.emitter import create_emitter
from jobprov.schemas.models import Event, JobFinished, MetricMeasured, ProvenanceDeclared
from jobprov.schemas.wire import decode_event
from jobprov.settings import load_emitter_settings
from jobprov.stream_processors.metrics import scrape_sum
from jobprov.stream_processors.worker import ensure_topics

TOPIC = "jobprov.events"
NIGHTS = 14
UPGRADE_NIGHT = 8  # numpy 1.26.4 -> 2.0.1; shifts AM1 on testdata_hsc only


def create_topic(bootstrap: str) -> None:
    ensure_topics(bootstrap, {TOPIC: 4})


def consume_all(bootstrap: str, idle: float = 3.0) -> list[Event]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "log_level": 0,
        }
    )
    consumer.subscribe([TOPIC])
    events: list[Event] = []
    last = time.monotonic()
    while time.monotonic() - last < idle or not events:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        events.append(decode_event(msg.value()))
        last = time.monotonic()
    consumer.close()
    return events


def nightly_jobs(settings_overrides: dict[str, object]) -> None:
    rng = random.Random(42)
    emitter = create_emitter(load_emitter_settings(settings_overrides))
    start = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
    for night in range(NIGHTS):
        numpy = "2.0.1" if night >= UPGRADE_NIGHT else "1.26.4"
        for dataset in ("testdata_hsc", "testdata_cfht"):
            for band in ("r", "all"):
                t0 = start + timedelta(days=night, minutes=rng.randint(0, 30))
                job = jobprov.job(
                    name="validate_drp",
                    kind="ci",
                    provenance={"dataset": dataset, "band": band},
                    datasets=[{"name": dataset, "version": "w.2026.40"}],
                    time=t0,
                    emitter=emitter,
                )
                with job:
                    job.declare(software={"numpy": numpy, "pipe_tasks": "26.0.0"}, time=t0)
                    shift = 1.5 if (dataset == "testdata_hsc" and night >= UPGRADE_NIGHT) else 0.0
                    base = {"testdata_hsc": 10.0, "testdata_cfht": 14.0}[dataset]
                    job.metric("AM1", base + shift + rng.gauss(0, 0.2), unit="mas", time=t0 + timedelta(minutes=20))
                    job.metric("PA1", 8.0 + rng.gauss(0, 0.1), unit="mmag", time=t0 + timedelta(minutes=21))
                    job.finish(time=t0 + timedelta(minutes=25))
    # A job that fails with an exception, recorded as it happens.
    try:
        with jobprov.job(name="validate_drp", kind="ci", provenance={"dataset": "testdata_cfht"}, emitter=emitter):
            raise RuntimeError("butler repository not found")
    except RuntimeError:
        pass
    emitter.close()


def wrapped_jobs(env: dict[str, str]) -> None:
    jobprov_cli = [sys.executable, "-m", "jobprov.cli.main"]
    script = f"{' '.join(jobprov_cli)} emit metric TE1 0.93 --tag band=r && echo measured"
    subprocess.run(
        [*jobprov_cli, "run", "--name", "shell_metric", "-p", "dataset=testdata_hsc", "--", "sh", "-c", script],
        env=env,
        check=True,
    )
    killed = subprocess.Popen([*jobprov_cli, "run", "--name", "long_job", "--", "sleep", "30"], env=env)
    time.sleep(1.5)
    killed.send_signal(signal.SIGTERM)
    killed.wait(timeout=30)


def report(events: list[Event]) -> None:
    print(f"\n{len(events)} events on {TOPIC}")
    for etype, count in sorted(Counter(e.event_type for e in events).items()):
        print(f"  {etype:<20} {count}")
    statuses = Counter(e.payload.status for e in events if isinstance(e.payload, JobFinished))
    print("\njobs by final status: " + ", ".join(f"{s}={n}" for s, n in sorted(statuses.items())))

    provenance: dict[str, dict[str, str]] = defaultdict(dict)
    for e in events:
        if isinstance(e.payload, ProvenanceDeclared):
            provenance[e.job_id].update(e.payload.values)
            if "numpy" in e.payload.software:
                provenance[e.job_id]["numpy"] = e.payload.software["numpy"]
    series: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for e in events:
        if isinstance(e.payload, MetricMeasured) and e.payload.name == "AM1":
            p = provenance[e.job_id]
            series[(p.get("dataset", "?"), p.get("band", "?"), p.get("numpy", "?"))].append(e.payload.value)
    print("\nAM1 (mas) by dataset, band and numpy version: compare like with like")
    print(f"  {'dataset':<15} {'band':<5} {'numpy':<7} {'n':>3} {'mean':>7}")
    for (dataset, band, numpy), values in sorted(series.items()):
        print(f"  {dataset:<15} {band:<5} {numpy:<7} {len(values):>3} {sum(values) / len(values):>7.2f}")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobprov.cli.main", *args], env=env, check=True, capture_output=True, text=True
    )


def fold_into_store(bootstrap: str, workdir: Path, expected_events: int) -> None:
    """Run the stream processor into an embedded ClickHouse store, then query the store."""
    store = f"chdb://{workdir / 'store'}"
    metrics_port = free_port()
    env = {
        **os.environ,
        "JOBPROV_PROCESSOR_SOURCE_URL": f"kafka://{bootstrap}/{TOPIC}",
        "JOBPROV_PROCESSOR_SINK_URL": store,
        "JOBPROV_PROCESSOR_METRICS_PORT": str(metrics_port),
        "JOBPROV_PROCESSOR_WEB_PORT": str(free_port()),
        "JOBPROV_PROCESSOR_DATA_DIR": str(workdir / "processor"),
    }
    print(f"\nfolding the log with `jobprov process --sink {store}` ...")
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobprov.cli.main", "process"],
        env=env,
        stdout=(workdir / "processor.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while _folded(metrics_port) < expected_events:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the processor stopped early; see {workdir / 'processor.log'}")
            time.sleep(0.5)
    finally:
        worker.terminate()  # the worker owns the embedded store: let it go before querying
        worker.wait(60)
    print("\n$ jobprov query status")
    print(_cli("query", "status", env=env).stdout)
    print("$ jobprov query regressions AM1")
    print(_cli("query", "regressions", "AM1", env=env).stdout)


def _folded(port: int) -> float:
    return scrape_sum(port, "jobprov_events_folded_total{")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="jobprov-demo-"))
    broker = start_broker(log_path=workdir / "tansu.log")
    try:
        create_topic(broker.bootstrap)
        url = broker.url(TOPIC)
        spool = str(workdir / "spool")
        print(f"broker {broker.bootstrap}, spool {spool}")
        env = {**os.environ, "JOBPROV_URL": url, "JOBPROV_SPOOL_DIR": spool, "JOBPROV_CAPTURE_PACKAGES": "0"}
        overrides = {"url": url, "spool_dir": spool, "capture_packages": False}
        nightly_jobs(overrides)
        wrapped_jobs(env)
        events = consume_all(broker.bootstrap)
        report(events)
        fold_into_store(broker.bootstrap, workdir, len(events))

        print("\nbroker outage: stopping the broker, running a job, restarting, draining the spool")
        broker.stop()
        outage = {**overrides, "flush_timeout_s": 2.0, "delivery_timeout_ms": 2000}
        with jobprov.job(name="during_outage", emitter=create_emitter(load_emitter_settings(outage))) as job:
            job.metric("AM1", 10.1, unit="mas")
        job._emitter.close()  # type: ignore[union-attr]
        broker.start()
        create_topic(broker.bootstrap)  # Tansu keeps topics in memory: the restarted broker is empty
        subprocess.run([sys.executable, "-m", "jobprov.cli.main", "spool", "drain"], env=env, check=True)
        recovered = consume_all(broker.bootstrap)
        print(f"recovered from the spool: {len(recovered)} events of job {recovered[0].job_id if recovered else '-'}")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
