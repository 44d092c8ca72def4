"""The worker's state over a long log, on the embedded engine: memory after 1M events against after 10k, jobs in
memory against jobs running, and the time a new worker takes to resume at 1x and at 10x the log's length.

The log: jobs that start, measure and finish one after another in event time (each a few seconds), while a fixed
set of long jobs keeps running and sending resource samples the whole time: what a site looks like. Events go
through the same Processor, ClickHouse sink and state store as `jobprov process`, in batches of 20k (a flush).

Memory: the process's RSS, which here also holds the embedded ClickHouse engine serving the store (its caches and
primary indexes grow with the data; against a ClickHouse server they live in the server), the number of live Python
objects (flat when nothing of ours grows), and the fold states held (their pickled size).

Targets (issue 11): memory after 1M events within 50 MB of its memory after 10k; jobs in memory back to the
running jobs once the watermark passes; resume time within noise at 10x the log. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    ResourceSample,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.client import ENGINE_ALLOCATOR_ENV, ENGINE_ALLOCATOR_OPTIONS, connect
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.sinks.clickhouse.state import ClickHouseStateStore
from jobprov.stream_processors import snapshots
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SAMPLE = ResourceSample(cpu_user_s=1.0, cpu_system_s=0.1, rss_bytes=10**8, peak_rss_bytes=10**8, threads=4)


class _NoDeadLetters:
    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None:
        raise AssertionError(f"dead letter: {reason} {detail}")

    def flush(self, timeout: float) -> None:
        return None


def log(events: int, long_jobs: int, per_job: int = 20) -> Iterator[RawEvent]:
    """Short jobs back to back (one every 2 s of event time), and a sample of every long job each second."""
    offset, short, second = 0, 0, 0
    seqs = dict.fromkeys(range(long_jobs), 0)

    def raw(job_id: str, instance: str, seq: int, at: datetime, payload: object) -> RawEvent:
        nonlocal offset
        when = ms(at)
        event = Event(f"{instance}-{seq}", job_id, type(payload).__name__, when, when, Producer("bench", "0", instance),
                      seq, 1, payload=payload)  # fmt: skip
        offset += 1
        return RawEvent(encode_event(event), "events", 0, offset)

    for j in range(long_jobs):  # they start first and never finish
        for n, payload in enumerate((JobSubmitted(name="long", kind="hpc"), JobStarted(host="h", os="l", kernel="k",
                                     cwd="/"), ProvenanceDeclared(values={"dataset": "hsc"})), 1):  # fmt: skip
            seqs[j] = n
            yield raw(f"long-{j}", f"long-{j}", n, T0, payload)
    while offset < events:
        at = T0 + timedelta(seconds=2 * short)
        job_id = f"short-{short:07d}"
        payloads: list[object] = [JobSubmitted(name="nightly", kind="ci"),
                                  JobStarted(host="h", os="l", kernel="k", cwd="/"),
                                  ProvenanceDeclared(values={"dataset": "hsc", "band": "r"})]  # fmt: skip
        payloads += [MetricMeasured(name="AM1", value=float(n), unit="mas") for n in range(per_job - 4)]
        payloads.append(JobFinished(status="succeeded", exit_code=0))
        for n, payload in enumerate(payloads, 1):
            yield raw(job_id, job_id, n, at + timedelta(milliseconds=50 * n), payload)
        short += 1
        while second < 2 * short:  # the long jobs' samples keep time with the short jobs
            for j in range(long_jobs):
                seqs[j] += 1
                yield raw(f"long-{j}", f"long-{j}", seqs[j], T0 + timedelta(seconds=second), SAMPLE)
            second += 1


def memory(processor: Processor) -> tuple[float, int, float]:
    """(RSS of the process in MB, the embedded engine's memory included; live Python objects; the pickled size
    of the fold states held, in MB)."""
    gc.collect()
    held = sum(len(snapshots.dump(job)) for job in processor.states.values())
    return float(psutil.Process().memory_info().rss) / 2**20, len(gc.get_objects()), held / 2**20


def engine_memory(client: Any) -> tuple[float, float]:
    """What the embedded engine's allocator (its own jemalloc) holds: (allocated, resident) MB. Resident is the
    engine's share of the RSS; allocated, what it uses of it now."""
    stats = client.query("SELECT * FROM system.jemalloc_stats").result_rows[0][0]
    line = next(text for text in stats.splitlines() if text.startswith("Allocated:"))
    fields = dict(part.strip().split(": ")[:2] for part in line.split(", ") if ": " in part)
    return int(fields["Allocated"]) / 2**20, int(fields["resident"].split()[0]) / 2**20


def resume_seconds(client: object, database: str, repeats: int = 3) -> tuple[float, int]:
    best, jobs = float("inf"), 0
    for _ in range(repeats):
        fresh = Processor(ClickHouseSink(client, database), _NoDeadLetters(), FoldContext(),
                          state_store=ClickHouseStateStore(client, database))  # fmt: skip
        started = time.perf_counter()
        jobs = fresh.resume("events", [0])
        best = min(best, time.perf_counter() - started)
    return best, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--long-jobs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--engine-allocator", metavar="OPTIONS", default=ENGINE_ALLOCATOR_OPTIONS,
                        help="the embedded engine's allocator options (default: %(default)s, what jobprov gives it; "
                        "'' for the engine build's own, which keeps freed pages 5 s)")  # fmt: skip
    args = parser.parse_args()
    os.environ[ENGINE_ALLOCATOR_ENV] = args.engine_allocator  # read once, when the engine loads (below)

    client = connect(f"chdb://{tempfile.mkdtemp(prefix='jobprov-state-bench-')}/store")
    migrate(client, Target("jobprov"))
    processor = Processor(ClickHouseSink(client, "jobprov"), _NoDeadLetters(), FoldContext(),
                          state_store=ClickHouseStateStore(client, "jobprov"))  # fmt: skip
    marks = {10_000: "10k", args.events // 10: "1x", args.events: "10x"}
    figures: dict[str, tuple[tuple[float, int, float], int]] = {}
    resumes: dict[str, tuple[float, int]] = {}
    engine: dict[str, tuple[float, float]] = {}
    done, batch, started = 0, [], time.perf_counter()
    for item in log(args.events, args.long_jobs):
        batch.append(item)
        if len(batch) == args.batch or done + len(batch) in marks:
            processor.process_batch(batch)
            done += len(batch)
            batch = []
            if done in marks:
                figures[marks[done]] = (memory(processor), len(processor.states))
                engine[marks[done]] = engine_memory(client)
                if marks[done] != "10k":
                    resumes[marks[done]] = resume_seconds(client, "jobprov")
    elapsed = time.perf_counter() - started
    print(f"{done:,} events ({args.long_jobs} long-running jobs; short jobs of 20 events), {done / elapsed:,.0f}/s, "
          f"the engine's allocator given {args.engine_allocator!r}:")  # fmt: skip
    for mark in ("10k", "1x", "10x"):
        (rss, objects, held), jobs = figures[mark]
        allocated, resident = engine[mark]
        print(f"  after {mark:>3}: RSS {rss:6.1f} MB (the engine's allocator: {resident:5.1f} MB resident, "
              f"{allocated:5.1f} MB allocated), {objects:,} Python "
              f"objects, {jobs:5d} jobs in memory ({held:.2f} MB of state)")  # fmt: skip
    (rss0, objects0, _), (rss1, objects1, _) = figures["10k"][0], figures["10x"][0]
    print(f"  growth from 10k to {done:,} events: RSS {rss1 - rss0:+.1f} MB (target within 50 MB), "
          f"Python objects {objects1 - objects0:+,}")  # fmt: skip
    print(f"  jobs in memory at the end: {figures['10x'][1]} ({args.long_jobs} running, the rest within lateness)")
    (t1, j1), (t10, j10) = resumes["1x"], resumes["10x"]
    print(f"  resume at 1x the log ({args.events // 10:,} events): {t1 * 1000:.0f} ms for {j1} jobs")
    print(f"  resume at 10x the log ({args.events:,} events): {t10 * 1000:.0f} ms for {j10} jobs ({t10 / t1:.2f}x)")


if __name__ == "__main__":
    main()
