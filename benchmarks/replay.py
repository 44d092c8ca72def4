"""Replay benchmark: rebuild every derived table from the log, against baselines measured in the same run.

The log is the fold benchmark's workload (lifecycle, provenance, steps, artifacts, samples, metrics), encoded
as on the wire and written to the events table of an embedded ClickHouse store; then
1. baseline: reading the events table back (the floor of any replay from it), and decoding every event;
2. baseline: decode + fold + snapshot with no sink (the CPU of the fold itself);
3. `replay()` from the events table into a fresh shadow database (what `jobprov replay` runs).

Target (issue 11): >= 4x the replay rate measured before it (14.7k events/s, the same workload on this machine).
`--jobs 200000 --events-per-job 50` is a 10M-event run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fold import workload

from jobprov.schemas.wire import decode_event, encode_event
from jobprov.sinks.clickhouse.client import BATCH_ENGINE_ALLOCATOR_OPTIONS, configure_engine_allocator, connect
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.replay import from_events_table, replay

BEFORE_EVENTS_PER_S = 14_700  # replay() of this workload before the batch path (issue 11)


def load_log(client: object, database: str, raw: list[bytes]) -> None:
    """The store as the live pipeline leaves it: the processor folds the log in batches into the tables,
    the events table among them."""
    migrate(client, Target(database))
    processor = Processor(ClickHouseSink(client, database), ClickHouseDeadLetters(client, database), FoldContext())
    chunk = 20_000
    for start in range(0, len(raw), chunk):
        processor.process_batch(
            [RawEvent(data, "events", 0, start + i) for i, data in enumerate(raw[start : start + chunk])]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4_000)
    parser.add_argument("--events-per-job", type=int, default=50)
    args = parser.parse_args()

    raw = [encode_event(e) for e in workload(args.jobs, args.events_per_job)]
    n = len(raw)
    store = Path(tempfile.mkdtemp(prefix="jobprov-replay-bench-"))
    configure_engine_allocator(BATCH_ENGINE_ALLOCATOR_OPTIONS)  # as `jobprov replay` does
    client = connect(f"chdb://{store}")
    print(f"replay benchmark: {args.jobs:,} jobs x {args.events_per_job} events = {n:,} events")
    t0 = time.perf_counter()
    load_log(client, "live", raw)
    print(f"  the live pipeline's batches (processor into the tables): {n / (time.perf_counter() - t0):,.0f} events/s")

    # The replay first, as `jobprov replay` runs it, in a process that has decoded nothing yet: after the
    # baselines (every event decoded and folded, then dropped) it ran 3-5% slower at 1M events.
    report = replay(from_events_table(client, "live"), client, "shadow", progress=False)
    assert report.events == n and report.dead_letters == 0
    t0 = time.perf_counter()
    read = list(from_events_table(client, "live"))
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    for item in read:
        decode_event(item.value)
    t_decode = time.perf_counter() - t0
    print(f"  baseline, read the events table: {n / t_read:,.0f} events/s; decode: {n / t_decode:,.0f} events/s")

    t0 = time.perf_counter()
    context = FoldContext()
    states: dict[str, object] = {}
    for item in read:
        event = decode_event(item.value)
        states[event.job_id], _ = fold(states.get(event.job_id), event, context)  # type: ignore[arg-type]
    for state in states.values():
        snapshot(state)  # type: ignore[arg-type]
    t_fold = time.perf_counter() - t0
    print(f"  baseline, decode + fold + snapshot, no sink: {n / t_fold:,.0f} events/s")

    print(f"  replay (events table -> shadow tables): {report.rate:,.0f} events/s, {report.seconds:.1f} s")
    print(f"  replay vs decode+fold alone: {report.rate / (n / t_fold):.2f}x; vs reading the log: "
          f"{report.rate / (n / t_read):.3f}x")  # fmt: skip
    print(f"  vs the replay of issue 11's start ({BEFORE_EVENTS_PER_S:,}/s): {report.rate / BEFORE_EVENTS_PER_S:.1f}x "
          "(target >= 4x)")  # fmt: skip


if __name__ == "__main__":
    main()
