"""End to end, as a user sees it: jobs emit through the public emitter into `jobprov up`, timed from the first event
until the query API shows every job and every metric point. The baseline, in the same run: the same jobs emitted
the same way into a topic of the same broker, timed from the first event until a raw confluent-kafka consumer
(another process, subscribed before) has read them all: what emitter and broker deliver with no processing.

Targets (issue 11): >= 20% of the raw consumer, and >= 5x the rate the faust worker reached here (3.3k events/s).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from jobprov.embedded.service import launch, stop
from jobprov.embedded.tansu import free_port
from jobprov.emitters.kafka import parse_kafka_url
from jobprov.stream_processors.worker import ensure_topics

FAUST_EVENTS_PER_S = 3_300  # the same measurement with the faust worker (issue 11)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


# The jobs, through the public emitter of the interpreter that runs it: each installation measured emits with its
# own emitter (an older worker cannot be expected to read a newer emitter's events). Prints events, points, seconds.
_EMIT = """
import random, sys, time
from jobprov.emitters.emitter import create_emitter
from jobprov.emitters.job import Job
from jobprov.settings import load_emitter_settings
kafka_url, spool, jobs, metrics_per_job = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(1)
# A slow consumer must not make the emitter give up on the broker: the benchmark wants every event sent.
settings = load_emitter_settings({"url": kafka_url, "spool_dir": spool, "capture_packages": False,
                                  "capture_git": False, "delivery_timeout_ms": 600_000, "flush_timeout_s": 600.0},
                                 env={})
emitter = create_emitter(settings)
points, started = 0, time.monotonic()
for j in range(jobs):
    provenance = {"dataset": rng.choice(["hsc", "cfht"]), "band": rng.choice(["r", "all"])}
    with Job(name="validate_drp", job_id=f"bench-{j:06d}", provenance=provenance, emitter=emitter) as job:
        job.used(f"file:///raw/{j}.fits")
        with job.step("measure"):
            for _ in range(metrics_per_job):
                job.metric(rng.choice(["AM1", "PA1", "TE1"]), rng.gauss(10, 1), unit="mas")
                points += 1
        job.produced(f"file:///out/{j}.parq")
report = emitter.close()
assert report.spooled == 0, "the broker must take every event"
print(report.delivered, points, time.monotonic() - started, flush=True)
"""


def emit(python: str, kafka_url: str, spool: Path, jobs: int, metrics_per_job: int) -> tuple[int, int]:
    """Jobs with provenance, a step, artifacts and metrics through ``python``'s emitter; returns (events, points)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")} | {"PYTHONSAFEPATH": "1"}
    out = subprocess.run([python, "-c", _EMIT, kafka_url, str(spool), str(jobs), str(metrics_per_job)],
                         env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    events, points, _ = out.split()
    return int(events), int(points)


def wait_for_api(api_url: str, jobs: int, points: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _get(f"{api_url}/api/v1/status")
        shown = sum(int(v) for v in status.values())
        stored = sum(int(m["points"]) for m in _get(f"{api_url}/api/v1/metrics"))
        if shown >= jobs and stored >= points and status.get("succeeded", 0) == jobs:
            return
        time.sleep(0.2)
    raise SystemExit(f"the API showed {shown} jobs and {stored} points of {jobs} and {points} after {timeout}s")


_RAW_CONSUMER = """
import sys, time, uuid
from confluent_kafka import Consumer
bootstrap, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4()}", "log_level": 0,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
consumer.subscribe([topic])
count, deadline = 0, time.monotonic() + 600
while consumer.assignment() == [] and time.monotonic() < deadline:
    consumer.poll(0.1)
print("ready", flush=True)
while count < expected and time.monotonic() < deadline:
    count += sum(1 for m in consumer.consume(1000, timeout=0.5) if not m.error())
print(count, time.monotonic(), flush=True)
"""


def raw_baseline(bootstrap: str, spool: Path, jobs: int, metrics_per_job: int) -> tuple[int, float]:
    """(events, seconds) from the first event emitted until a raw consumer in another process has them all."""
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 4})
    expected = jobs * (metrics_per_job + 8)  # submitted, started, provenance, used, step x2, produced, finished
    consumer = subprocess.Popen([sys.executable, "-c", _RAW_CONSUMER, bootstrap, topic, str(expected)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert consumer.stdout is not None
    assert consumer.stdout.readline().strip() == "ready"
    started = time.monotonic()
    events, _ = emit(sys.executable, f"kafka://{bootstrap}/{topic}", spool, jobs, metrics_per_job)
    count, finished = consumer.stdout.readline().split()
    consumer.wait(60)
    if int(count) != events:
        raise SystemExit(f"the raw consumer read {count} of {events} events (expected {expected})")
    return events, float(finished) - started


def through_up(
    python: str, jobs: int, metrics_per_job: int, *, raw: bool, broker_log: str | None = None
) -> dict[str, float]:
    """One `jobprov up` (of the installation behind ``python``, with ``--broker-log`` if given): the jobs emitted
    into it, timed until its API shows them all; with ``raw``, the raw baseline first, on its broker."""
    home = Path(tempfile.mkdtemp(prefix="jobprov-stream-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")} | {"JOBPROV_HOME": str(home)}
    env["PYTHONSAFEPATH"] = "1"  # import the installation's own jobprov, never a checkout in the working directory
    ports = ["--kafka-port", str(free_port()), "--api-port", str(free_port()), "--metrics-port", str(free_port())]
    if broker_log:
        ports += ["--broker-log", broker_log]
    proc, info = launch(ports, env=env, home=home, log_path=home / "up.log", python=python)
    figures: dict[str, float] = {}
    try:
        if raw:
            bootstrap, _ = parse_kafka_url(info.kafka_url)
            raw_events, raw_seconds = raw_baseline(bootstrap, home / "spool-raw", jobs, metrics_per_job)
            figures["raw"] = raw_events / raw_seconds
        started = time.monotonic()
        events, points = emit(python, info.kafka_url, home / "spool", jobs, metrics_per_job)
        figures["emitted_s"] = time.monotonic() - started
        wait_for_api(info.api_url, jobs, points, timeout=1800)
        figures["elapsed_s"] = time.monotonic() - started
        figures["events"], figures["points"] = events, points
        figures["rate"] = events / figures["elapsed_s"]
    finally:
        stop(proc)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2_000)
    parser.add_argument("--metrics-per-job", type=int, default=40)
    parser.add_argument(
        "--baseline-python",
        help="another installation's interpreter (e.g. the previous release's virtual environment): "
        "its `jobprov up` is measured the same way, in the same run",
    )
    parser.add_argument(
        "--broker-logs",
        action="store_true",
        help="also measure `jobprov up --broker-log memory` in the same run: what the durable log costs",
    )
    args = parser.parse_args()

    now = through_up(sys.executable, args.jobs, args.metrics_per_job, raw=True, broker_log="durable")
    print(f"{now['events']:,.0f} events ({args.jobs:,} jobs, {now['points']:,.0f} metric points) into `jobprov up`:")
    print(f"  emitting took {now['emitted_s']:.1f} s; the API showed everything after {now['elapsed_s']:.1f} s")
    print(f"  end to end: {now['rate']:,.0f} events/s")
    print(f"  raw (the same jobs emitted to a topic of the same broker, read by a raw consumer): {now['raw']:,.0f}/s")
    print(f"  ratio to raw: {now['rate'] / now['raw']:.1%} (target >= 20%)")
    if args.broker_logs:
        memory = through_up(sys.executable, args.jobs, args.metrics_per_job, raw=True, broker_log="memory")
        share, raw_share = now["rate"] / memory["rate"], now["raw"] / memory["raw"]
        print(f"  with the memory log: {memory['rate']:,.0f} events/s end to end, raw {memory['raw']:,.0f}/s; "
              f"the durable log runs at {share:.0%} of it (raw {raw_share:.0%})")  # fmt: skip
    if args.baseline_python:
        before = through_up(args.baseline_python, args.jobs, args.metrics_per_job, raw=False)
        print(f"  {args.baseline_python}: {before['rate']:,.0f} events/s after {before['elapsed_s']:.1f} s; "
              f"now {now['rate'] / before['rate']:.1f}x that (target >= 5x)")  # fmt: skip
    else:
        ratio = now["rate"] / FAUST_EVENTS_PER_S
        print(f"  against the faust worker ({FAUST_EVENTS_PER_S:,}/s): {ratio:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
