"""Fold benchmarks, each against a baseline measured in the same run.

1. Pure fold throughput on one core: 10k jobs x 50 events (pre-decoded), events/s; plus decode cost per event.
2. Streaming end to end through the broker: the same log produced to a topic, folded by a `jobprov process`
   worker (decode, fold, snapshot, sink writes to the derived topic) vs a raw confluent-kafka consumer reading
   the same topic in the same run.

Targets (issue notes): fold >= 200k events/s; streaming >= 50k events/s. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from jobprov.embedded.tansu import free_port, start_broker
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    ArtifactProduced,
    ArtifactUsed,
    Event,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
    StepStarted,
)
from jobprov.schemas.models import Producer as ProducerInfo
from jobprov.schemas.wire import decode_event, encode_event
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.metrics import scrape_sum
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.records import to_json_dict
from jobprov.stream_processors.worker import ensure_topics


def workload(jobs: int, per_job: int, seed: int = 1) -> list[Event]:
    """A realistic mix: lifecycle, provenance, steps, artifacts, heartbeats, samples; the rest metrics."""
    rng = random.Random(seed)
    producer = ProducerInfo("bench", "0", "instance")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[Event] = []
    for j in range(jobs):
        job_id = f"job-{j:06d}"
        start = t0 + timedelta(minutes=j)
        fixed = [
            JobSubmitted(name="validate_drp", kind="ci"),
            JobStarted(host=f"node{j % 50}", os="Linux", kernel="6.1", cwd="/w"),
            ProvenanceDeclared(
                values={"dataset": rng.choice(["hsc", "cfht"]), "band": rng.choice(["r", "all"])},
                software={"numpy": "2.0.1", "pipe_tasks": "26.0.0"},
            ),
            StepStarted(name="measure"),
            ArtifactUsed(uri=f"file:///raw/{j}.fits"),
            Heartbeat(interval_ms=30000),
            ResourceSample(cpu_user_s=1.0, cpu_system_s=0.1, rss_bytes=10**8, peak_rss_bytes=10**8, threads=4),
            ArtifactProduced(uri=f"file:///out/{j}.parq"),
            StepFinished(name="measure", status="succeeded"),
        ]
        payloads: list[object] = fixed[:4]
        payloads += [MetricMeasured(name=rng.choice(["AM1", "PA1", "TE1"]), value=rng.gauss(10, 1), unit="mas")
                     for _ in range(per_job - len(fixed) - 1)]  # fmt: skip
        payloads += [*fixed[4:], JobFinished(status="succeeded", exit_code=0)]
        for seq, payload in enumerate(payloads, 1):
            t = start + timedelta(seconds=seq)
            events.append(
                Event(
                    f"{job_id}-{seq}", job_id, type(payload).__name__, ms(t), ms(t), producer, seq, 1, payload=payload
                )
            )
    return events


def bench_pure(events: list[Event]) -> None:
    context = FoldContext()
    states: dict[str, object] = {}
    started = time.perf_counter()
    for event in events:
        state, _ = fold(states.get(event.job_id), event, context)  # type: ignore[arg-type]
        states[event.job_id] = state
    elapsed = time.perf_counter() - started
    t_snap = time.perf_counter()
    for state in states.values():
        snapshot(state)  # type: ignore[arg-type]
    snap_elapsed = time.perf_counter() - t_snap
    print(f"pure fold, {len(states)} jobs x {len(events) // len(states)} events, one core:")
    print(f"  fold: {len(events) / elapsed:,.0f} events/s ({elapsed / len(events) * 1e6:.2f} µs/event)")
    print(f"  snapshot: {snap_elapsed / len(states) * 1e6:.1f} µs/job (once per job per batch in the worker)")
    sample = [encode_event(e) for e in events[:20000]]
    t_dec = time.perf_counter()
    for data in sample:
        decode_event(data)
    dec = (time.perf_counter() - t_dec) / len(sample)
    print(f"  decode (framed bytes -> Event): {dec * 1e6:.2f} µs/event ({1 / dec:,.0f} events/s)")


class _JsonNullSink:
    """Serialises records as the topic sink does, then drops them: the sink's CPU cost without the broker."""

    name = "json-null"

    def __init__(self) -> None:
        self.records = 0

    def write(self, records: list[Any]) -> None:
        for record in records:
            json.dumps(to_json_dict(record), separators=(",", ":"))
        self.records += len(records)

    def flush(self, timeout: float) -> None:
        return None

    def detach(self) -> _JsonNullSink:
        return self

    def close(self) -> None:
        return None


class _NoDeadLetters:
    def send(self, *args: Any) -> None:
        raise AssertionError("the workload has no bad events")

    def flush(self, timeout: float) -> None:
        return None


def bench_core(events: list[Event], batch: int = 1000) -> None:
    """The worker's per-event CPU path without faust and the broker: where the time goes."""
    raw = [RawEvent(encode_event(e), "t", 0, i) for i, e in enumerate(events)]
    sink = _JsonNullSink()
    processor = Processor(sink, _NoDeadLetters(), FoldContext())
    started = time.perf_counter()
    for i in range(0, len(raw), batch):
        processor.process_batch(raw[i : i + batch])
    elapsed = time.perf_counter() - started
    print(f"processor core in-process (decode, fold, snapshots, JSON records), batches of {batch}:")
    print(f"  {len(raw) / elapsed:,.0f} events/s ({elapsed / len(raw) * 1e6:.1f} µs/event, "
          f"{sink.records / len(raw):.2f} records/event)")  # fmt: skip


def bench_streaming(events: list[Event], workdir: Path) -> None:
    broker = start_broker(log_path=workdir / "tansu.log")
    try:
        topic, partitions = f"bench-{uuid.uuid4().hex[:8]}", 2
        ensure_topics(broker.bootstrap, {topic: partitions, f"{topic}.derived": partitions, f"{topic}.dlq": 1})
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "log_level": 0,
                             "queue.buffering.max.messages": 2_000_000})  # fmt: skip
        for event in events:
            while True:
                try:
                    producer.produce(topic, encode_event(event), event.job_id)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)

        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"raw-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "log_level": 0, "session.timeout.ms": 6000})  # fmt: skip
        consumer.subscribe([topic])
        count, first = 0, None
        while count < len(events):
            batch = consumer.consume(1000, timeout=1.0)
            if batch and first is None:
                first = time.perf_counter()
            count += sum(1 for m in batch if not m.error())
        raw_rate = count / (time.perf_counter() - (first or time.perf_counter()))
        consumer.close()

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
        env.update(
            JOBPROV_PROCESSOR_SOURCE_URL=f"kafka://{broker.bootstrap}/{topic}",
            JOBPROV_PROCESSOR_PARTITIONS=str(partitions),
            JOBPROV_PROCESSOR_METRICS_PORT=str(port),
            JOBPROV_PROCESSOR_DERIVED_TOPIC=f"{topic}.derived",
            JOBPROV_PROCESSOR_DEAD_LETTER_TOPIC=f"{topic}.dlq",
            JOBPROV_PROCESSOR_APP_ID=f"bench-{topic}",
        )
        worker = subprocess.Popen([sys.executable, "-m", "jobprov.cli.main", "process"], env=env,
                                  stdout=(workdir / "worker.log").open("wb"), stderr=subprocess.STDOUT)  # fmt: skip
        try:
            first_t = last_t = None
            folded = 0.0
            deadline = time.monotonic() + 900
            while folded < len(events) and time.monotonic() < deadline:
                time.sleep(0.25)
                folded = _folded(port)
                now = time.perf_counter()
                if folded and first_t is None:
                    first_t, first_n = now, folded
                last_t = now
            assert first_t is not None and last_t is not None
            rate = (folded - first_n) / (last_t - first_t) if last_t > first_t else float("nan")
        finally:
            worker.terminate()
            worker.wait(30)
        print(f"streaming through the broker, {len(events)} events on {partitions} partitions, one worker:")
        print(f"  raw confluent-kafka consume: {raw_rate:,.0f} events/s")
        print(f"  jobprov process (decode, fold, snapshot, sink): {rate:,.0f} events/s")
        print(f"  ratio raw/worker: {raw_rate / rate:.1f}x")
    finally:
        broker.stop()


def _folded(port: int) -> float:
    return scrape_sum(port, "jobprov_events_folded_total{")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--events-per-job", type=int, default=50)
    parser.add_argument("--skip-streaming", action="store_true")
    args = parser.parse_args()
    events = workload(args.jobs, args.events_per_job)
    bench_pure(events)
    bench_core(events)
    if not args.skip_streaming:
        bench_streaming(events, Path(tempfile.mkdtemp(prefix="jobprov-fold-bench-")))


if __name__ == "__main__":
    main()
