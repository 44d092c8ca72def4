"""Alert scan benchmark: what one pass of `jobprov alerts scan` (and of `jobprov up`'s loop) costs.

An embedded store holds ``--buckets`` buckets of ``--points`` nightly AM1 points (noise 0.3, a step of 1.5 from
two thirds of the way in every other bucket), folded by the real processor. Then
1. a first pass over every bucket (what `jobprov up` does at start), its alerts folded back in;
2. a second pass over every bucket: nothing new to raise;
3. a pass over the buckets whose jobs sent events since a moment (what each later pass of the loop does), after 5
   buckets got one more point.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

from jobprov.emitters.importers.send import to_events
from jobprov.query.alerts import SENDER, raised_records, scan
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import Event, MetricMeasured, Producer, ProvenanceDeclared
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.client import connect
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent

PRODUCER = Producer("benchmark", "0", "benchmark-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def nightly(bucket: int, night: int, value: float) -> list[Event]:
    job = f"b{bucket}-n{night}"
    t = ms(T0 + timedelta(days=night, minutes=bucket))
    return [
        Event(f"{job}-1", job, "ProvenanceDeclared", t, t, PRODUCER, 1,
              payload=ProvenanceDeclared(values={"dataset": f"d{bucket}"})),
        Event(f"{job}-2", job, "MetricMeasured", t, t, PRODUCER, 2, payload=MetricMeasured(name="AM1", value=value)),
    ]  # fmt: skip


def fold(processor: Processor, events: list[Event]) -> None:
    raw = [RawEvent(encode_event(e), "benchmark", 0, i) for i, e in enumerate(events)]
    for start in range(0, len(raw), 20_000):
        processor.process_batch(raw[start : start + 20_000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--buckets", type=int, default=200)
    parser.add_argument("--points", type=int, default=150)
    args = parser.parse_args()
    rng = random.Random(1)
    client: Any = connect(f"chdb://{tempfile.mkdtemp(prefix='jobprov-bench-')}")
    migrate(client, Target("bench"))
    processor = Processor(ClickHouseSink(client, "bench"), ClickHouseDeadLetters(client, "bench"), FoldContext())
    step_at = args.points * 2 // 3
    fold(processor, [
        e for b in range(args.buckets) for n in range(args.points)
        for e in nightly(b, n, 10.0 + (1.5 if b % 2 == 0 and n >= step_at else 0.0) + rng.gauss(0, 0.3))
    ])  # fmt: skip
    store = Store(client, "bench")

    first = scan(store)
    per_bucket = 1000 * first.seconds / args.buckets
    print(f"{args.buckets} buckets x {args.points} points, first pass: {first.seconds:.2f} s ({per_bucket:.0f} ms a "
          f"bucket), {len(first.raised)} alerts (steps in {(args.buckets + 1) // 2} buckets)")  # fmt: skip
    fold(processor, to_events(raised_records(first.raised, datetime.now(UTC)), SENDER))
    again = scan(store)
    print(f"second pass, every bucket: {again.seconds:.2f} s, {len(again.raised)} new")
    since = datetime.now(UTC)
    fold(processor, [e for b in range(5) for e in nightly(b, args.points, 10.0)])
    later = scan(store, since=since)
    print(
        f"a pass after 5 buckets got a point: {later.buckets} buckets in {later.seconds:.2f} s, {len(later.raised)} new"
    )


if __name__ == "__main__":
    main()
