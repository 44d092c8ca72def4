"""Emitter benchmarks, each against a baseline measured in the same run on the same broker.

1. emit() per MetricMeasured event vs raw confluent-kafka Producer.produce() of the same pre-serialised bytes:
   caller-side cost (mean, p50, p99 per call) and end-to-end throughput until the broker acknowledged all.
2. Spool-only throughput (file:// transport, fsync'd segments), events/s until close() returned.
3. `jobprov run` on a CPU-bound child vs the child alone: wall time overhead and the wrapper's peak RSS.

Targets (issue notes): emit ≤ 3x produce per call and p99 < 50 µs; spool ≥ 100k events/s; run < 1 % wall
time and < 30 MB RSS for the wrapper. Prints figures; does not assert them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

from jobprov.embedded.tansu import start_broker
from jobprov.emitters.emitter import create_emitter
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import Event, MetricMeasured
from jobprov.schemas.models import Producer as ProducerInfo
from jobprov.schemas.wire import encode_event
from jobprov.settings import load_emitter_settings
from jobprov.stream_processors.worker import ensure_topics


def _create_topic(bootstrap: str, name: str) -> None:
    ensure_topics(bootstrap, {name: 1})


def _percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[int(len(ordered) * 0.99)] / 1000
    return statistics.fmean(ordered) / 1000, p50, p99


def bench_emit(bootstrap: str, n: int, spool: Path) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(microsecond=0)
    sample = Event(
        str(uuid.uuid4()), "job-bench", "MetricMeasured", ms(now), ms(now), ProducerInfo("b", "0", "i"), 1, 1,
        payload=MetricMeasured(name="AM1", value=3.2, unit="mas", tags={"band": "r"}),
    )  # fmt: skip
    value = encode_event(sample)

    # Baseline: raw produce() of the same bytes.
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 0,
        }
    )
    per_call: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for _ in range(n):
        t0 = clock()
        while True:
            try:
                producer.produce(topic, value, "job-bench")
                break
            except BufferError:
                producer.poll(0.01)
        per_call.append(clock() - t0)
        if len(per_call) % 10000 == 0:
            producer.poll(0)
    producer.flush(60)
    raw_total = time.perf_counter() - start
    raw_mean, raw_p50, raw_p99 = _percentiles(per_call)

    # emit(): the same metric through the emitter (envelope, encoding and delivery on its sender thread).
    topic = f"bench-emit-{uuid.uuid4().hex[:8]}"
    _create_topic(bootstrap, topic)
    settings = load_emitter_settings(
        {"url": f"kafka://{bootstrap}/{topic}", "spool_dir": str(spool), "flush_timeout_s": 120.0}, env={}
    )
    emitter = create_emitter(settings)
    payload = MetricMeasured(name="AM1", value=3.2, unit="mas", tags={"band": "r"})
    per_call = []
    start = time.perf_counter()
    emit = emitter.emit
    for _ in range(n):
        t0 = clock()
        emit("job-bench", payload)
        per_call.append(clock() - t0)
    report = emitter.close()
    emit_total = time.perf_counter() - start
    emit_mean, emit_p50, emit_p99 = _percentiles(per_call)
    assert report.delivered == n, report

    print(f"emit vs produce, {n} MetricMeasured events, one broker")
    print(f"  raw produce()  per call: mean {raw_mean:.2f} µs  p50 {raw_p50:.2f} µs  p99 {raw_p99:.2f} µs")
    print(f"  emit()         per call: mean {emit_mean:.2f} µs  p50 {emit_p50:.2f} µs  p99 {emit_p99:.2f} µs")
    print(f"  ratio per call (mean): {emit_mean / raw_mean:.2f}x   (p99: {emit_p99 / raw_p99:.2f}x)")
    print(f"  end to end, all acknowledged: produce {n / raw_total:,.0f} ev/s, emit {n / emit_total:,.0f} ev/s")
    print(f"  ratio end to end: {emit_total / raw_total:.2f}x")


def bench_spool(n: int, spool: Path) -> None:
    settings = load_emitter_settings({"url": spool.as_uri(), "flush_timeout_s": 120.0}, env={})
    emitter = create_emitter(settings)
    payload = MetricMeasured(name="AM1", value=3.2, unit="mas", tags={"band": "r"})
    start = time.perf_counter()
    for _ in range(n):
        emitter.emit("job-bench", payload)
    report = emitter.close()
    elapsed = time.perf_counter() - start
    assert report.spooled == n, report
    size = sum(p.stat().st_size for p in spool.iterdir())
    print(f"spool only, {n} events: {n / elapsed:,.0f} events/s, {size / n:.0f} bytes/event on disk")


CPU_CHILD = "import time\nt=time.perf_counter()\nx=0\nwhile time.perf_counter()-t<{s}:\n    x+=1\n"


def bench_run(seconds: float, spool: Path, url: str) -> None:
    child = [sys.executable, "-c", CPU_CHILD.format(s=seconds)]
    env = {**os.environ, "JOBPROV_URL": url, "JOBPROV_SPOOL_DIR": str(spool), "JOBPROV_CAPTURE_PACKAGES": "0"}

    def timed(cmd: list[str]) -> tuple[float, int]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        return time.perf_counter() - t0, before

    bare, _ = timed(child)
    wrapper = [sys.executable, "-m", "jobprov.cli.main", "run", "--", *child]
    # The wrapper's own RSS: run it under /usr/bin/time-like accounting by wrapping a trivial child.
    wrapped, _ = timed(wrapper)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import resource, subprocess, sys;"
         f"subprocess.run({[*wrapper[:-len(child)], 'true']!r});"
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    wrapper_rss_mb = int(probe.stdout.strip().splitlines()[-1]) / 1024
    overhead = (wrapped - bare) / bare * 100
    print(f"jobprov run on a {seconds:.0f} s CPU-bound child: bare {bare:.3f} s, wrapped {wrapped:.3f} s")
    print(f"  wall time overhead {overhead:+.2f}% (includes wrapper start-up and exit flush)")
    print(f"  wrapper peak RSS {wrapper_rss_mb:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--run-seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jobprov-bench-"))
    broker = start_broker(log_path=work / "tansu.log")
    try:
        bench_emit(broker.bootstrap, args.events, work / "spool-kafka")
        bench_spool(args.events, work / "spool-only")
        topic = f"bench-run-{uuid.uuid4().hex[:8]}"
        _create_topic(broker.bootstrap, topic)
        bench_run(args.run_seconds, work / "spool-run", broker.url(topic))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
