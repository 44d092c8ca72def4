"""Replay: rebuild every derived table from the log with the same fold, into a shadow database.

``replay`` reads a log (the store's own ``events`` table, spool files, or a topic), folds it in large batches
through the same :class:`Processor` the live worker uses, and writes a fresh shadow database. ``verify``
compares shadow and live table by table on record content (``state_version`` and ingestion times depend on
batching, not on the log). ``swap`` exchanges every table of the two databases; it refuses unless the
verification was clean, or the operator forces it (after a fold or registry change, differences are the
point). Running a replay again starts the shadow over: an interrupted replay leaves the live tables untouched,
and since a clean verification means equal content, even an interrupted swap leaves live data equivalent.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from jobprov.errors import JobprovError
from jobprov.sinks.clickhouse.client import second_connection
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters, ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Handoff, Processor, RawEvent, batch_gc

# table -> columns left out of the comparison (they depend on batching and wall time, not on the log)
COMPARED = {
    "events": ("ingested_at",),
    "jobs": ("state_version",),
    "attempts": ("state_version",),
    "provenance": ("state_version",),
    "metric_points": ("state_version", "is_deleted"),
    "resources": ("state_version",),
    "lineage": ("state_version",),
    "annotations": ("state_version",),
    "steps": ("state_version",),
    "alerts": ("state_version",),
    # A bucket's keys follow from its id; its unit is whichever point the sink saw first, which depends on order.
    "buckets": ("unit",),
}
# Rows compared, where not all: the points where they are now; the buckets that hold some (a bucket a point was in
# only until late provenance moved it keeps its row, and whether it was written depends on where a flush fell).
_COMPARED_ROWS = {
    "metric_points": " WHERE is_deleted = 0",
    "buckets": " WHERE (metric, bucket) IN (SELECT metric, bucket FROM {db}.metric_points FINAL WHERE is_deleted = 0)",
}
# dead_letters is neither compared nor swapped: its rows name positions in the live source (a replay from the
# events table never sees the messages that did not decode), and the live ones must not be lost.


class Page(NamedTuple):
    """A batch of a replay's source."""

    messages: list[RawEvent]
    open_job: str | None
    """In a source in job order, the job whose events may go on in the next page (every other job of this page
    has had all its events); None when the source has no job order."""


class EventsTableSource:
    """The store's copy of the log, a job's events together, in event-id order within a job (which for
    the Python emitters is emission order). ``replay`` copies its rows into the shadow database with one
    INSERT ... SELECT in the engine: sending each event's bytes back through Python to rewrite the same row
    cost a fifth of the replay."""

    def __init__(self, client: Any, database: str, page: int = 50_000) -> None:
        Target(database)  # a plain identifier, or ConfigError
        self.client, self.database, self.page = client, database, page

    def __iter__(self) -> Iterator[RawEvent]:
        for page in self.batches(self.page):
            yield from page.messages

    def batches(self, size: int) -> Generator[Page, None, None]:
        """The events in pages of up to ``size``, each message positioned at its row's place in the read order
        (distinct positions: a replay's dead letters are distinct rows). Each message is made once, in one pass
        over the page (benchmarks/replay.py: making them one by one, then again with their positions, cost 7% of
        the replay)."""
        reader = second_connection(self.client)
        # On the embedded engine the next page is read beside the fold of this one, on a connection of its own.
        return self._batches(self.client, size) if reader is None else _ahead(self._batches(reader, size))

    def _batches(self, client: Any, size: int) -> Generator[Page, None, None]:
        start, new = 0, tuple.__new__
        for job_ids, raws in self._pages(client, size):
            fields = zip(raws, itertools.repeat(_EVENTS_TABLE), itertools.repeat(0), itertools.count(start))
            # A third of RawEvent(...)'s cost: no argument parsing.
            yield Page([new(RawEvent, message) for message in fields], job_ids[-1])
            start += len(raws)

    def _pages(self, client: Any, size: int) -> Iterator[tuple[list[str], list[bytes]]]:
        last: tuple[str, str] = ("", "")
        while True:
            # Columns, not rows: a tuple per row and a key kept per row cost more than the rest of reading.
            job_ids, event_ids, raws = client.query(
                f"SELECT job_id, event_id, raw FROM {self.database}.events FINAL "  # noqa: S608 - checked identifier
                "WHERE (job_id, event_id) > ({job:String}, {event:String}) ORDER BY job_id, event_id "
                "LIMIT {n:UInt32}",
                parameters={"job": last[0], "event": last[1], "n": size},
                column_formats={"raw": "bytes"},  # the original bytes, not text
            ).result_columns or ([], [], [])
            if not raws:
                return
            if not isinstance(raws[0], bytes):
                raise JobprovError("the events table returned text for raw bytes")
            yield job_ids, raws
            last = (job_ids[-1], event_ids[-1])

    def copy_into(self, shadow: str, client: Any = None) -> None:
        """Every row of the events table into ``shadow``'s (migrated to the same columns), through ``client``
        (default: the source's)."""
        Target(shadow)
        client = client or self.client
        columns = ", ".join(f"`{name}`" for name in _table_columns(client, self.database, "events"))
        client.command(
            f"INSERT INTO {shadow}.events ({columns}) SELECT {columns} FROM {self.database}.events"  # noqa: S608
        )


T = TypeVar("T")
_EVENTS_TABLE = "events-table"  # the topic of a message read from the events table


def _ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """``items``, produced by a thread up to ``depth`` ahead of the consumer; its error is raised here. Closing
    the iterator stops the thread."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put("item", item):
                    return
            put("end", None)
        except Exception as exc:
            put("error", exc)

    thread = threading.Thread(target=produce, name="jobprov-replay-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)


def _numbered(source: Iterable[RawEvent], size: int) -> Generator[Page, None, None]:
    """``source`` in lists of up to ``size``, each message positioned at its place in the source: positions make
    a replay's dead letters distinct rows (a source's own position is in the log)."""
    items, start = iter(source), 0
    while True:
        with batch_gc():  # reading a batch allocates like folding it (see batch_gc)
            pending = [RawEvent(item.value, item.topic, item.partition, start + n)
                       for n, item in enumerate(itertools.islice(items, size))]  # fmt: skip
        if not pending:
            return
        yield Page(pending, None)
        start += len(pending)


def from_events_table(client: Any, database: str, page: int = 50_000) -> EventsTableSource:
    """The store's copy of the log as a replay source (see :class:`EventsTableSource`)."""
    return EventsTableSource(client, database, page)


def from_spool(directory: str) -> Iterator[RawEvent]:
    """Events in spool segments or archived Avro files (any readable writer schema)."""
    from pathlib import Path

    from jobprov.emitters.spool import read_segment
    from jobprov.schemas.wire import SingleObjectCodec

    codec = SingleObjectCodec()
    for path in sorted(Path(directory).glob("*.avro*")):
        with path.open("rb") as handle:
            for record in read_segment(handle).records:
                yield RawEvent(codec.encode(record), f"file:{path.name}", 0, 0)


@dataclass
class ReplayReport:
    events: int = 0
    seconds: float = 0.0
    dead_letters: int = 0
    jobs_in_memory_peak: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def replay(
    source: Iterable[RawEvent],
    client: Any,
    shadow: str,
    context: FoldContext | None = None,
    batch: int = 100_000,
    progress: bool | None = None,
    total: int | None = None,
) -> ReplayReport:
    """Fold the whole log into a fresh ``shadow`` database. ``total`` (when the source knows its size) gives
    the progress an ETA: a bar on a terminal, plain lines otherwise.

    ``batch`` events are folded and inserted at a time: each table's insert has a fixed cost, and a replay has
    no consumer to answer, so its batches are five times the worker's flush (benchmarks/replay.py, 200k events:
    49.6k events/s in batches of 20,000, 55.7k in batches of 100,000, whose records, held until they are
    inserted, took the peak RSS from 655 MB to 735 MB)."""
    Target(shadow)  # a plain identifier, or ConfigError
    client.command(f"DROP DATABASE IF EXISTS {shadow}")
    migrate(client, Target(shadow))
    dead = ClickHouseDeadLetters(client, shadow)
    # On a connection of its own each batch is written beside the fold of the next (decision 0010).
    writer = second_connection(client)
    sink = ClickHouseSink(client, shadow, writer=writer)
    # The store's own copy of the log, read in job order.
    table = source if isinstance(source, EventsTableSource) else None
    if table is not None:
        sink.wants_events = False  # the rows are copied as they are, beside the fold or after it
    processor = Processor(sink, dead, context or FoldContext())
    report = ReplayReport()
    started = time.perf_counter()
    tty = sys.stderr.isatty() if progress is None else progress
    show = _Progress(total, tty=tty and sys.stderr.isatty(), quiet=progress is False)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="jobprov-replay-copy") as beside,
        ThreadPoolExecutor(1, thread_name_prefix="jobprov-replay-write") as writes,
    ):
        other = second_connection(client) if table is not None else None
        # On its own connection the copy runs beside the fold; on the same one, after it.
        copied = beside.submit(table.copy_into, shadow, other) if table is not None and other is not None else None
        write = writes.submit if writer is not None else _now
        batches = table.batches(batch) if table is not None else _numbered(source, batch)
        written: tuple[Future[None], Handoff] | None = None
        try:
            for pending, open_job in batches:
                processor.fold_batch(pending)
                report.events += len(pending)
                show.advance(len(pending))
                report.jobs_in_memory_peak = max(report.jobs_in_memory_peak, len(processor.states))
                if table is not None:  # in job order: memory follows the jobs still running, not the whole log
                    processor.forget_finished([job for job in processor.states if job != open_job])
                del pending  # handed off without the messages
                handoff = processor.handoff()
                if written is not None:
                    _settle(*written)  # one write at a time, in order
                written = write(processor.waiting, handoff.write), handoff
            if written is not None:
                _settle(*written)
            if table is not None:
                (copied or beside.submit(table.copy_into, shadow)).result()
        finally:
            batches.close()  # stops the read-ahead of a replay cut short
            show.close()
    report.seconds = time.perf_counter() - started
    dead_sql = f"SELECT count() FROM {shadow}.dead_letters"  # noqa: S608 - checked identifier
    report.dead_letters = int(client.query(dead_sql).result_rows[0][0])
    return report


def _now(call: Callable[[Callable[[], None]], None], argument: Callable[[], None]) -> Future[None]:
    """``call(argument)`` in this thread, as a finished future (no second connection to write beside on)."""
    done: Future[None] = Future()
    try:
        call(argument)
    except BaseException as exc:
        done.set_exception(exc)
    else:
        done.set_result(None)
    return done


def _settle(written: Future[None], handoff: Handoff) -> None:
    """Wait for a handoff's write; its records are then durable."""
    written.result()
    handoff.done()


def count_events(client: Any, database: str) -> int:
    """How many events the events table holds (the replay's total, for its ETA)."""
    Target(database)
    return int(client.query(f"SELECT count() FROM {database}.events FINAL").result_rows[0][0])  # noqa: S608


class _Progress:
    """A tqdm bar (events/s, ETA when the total is known) on a terminal; a plain line every few seconds
    otherwise (logs and CI); nothing when asked for quiet."""

    def __init__(self, total: int | None, *, tty: bool, quiet: bool, every_s: float = 5.0) -> None:
        self.total, self.quiet, self.every_s = total, quiet, every_s
        self.done = 0
        self.started = self.last = time.perf_counter()
        self.bar: Any = None
        if tty and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=" events", unit_scale=True, desc="replay", file=sys.stderr)

    def advance(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif not self.quiet and time.perf_counter() - self.last >= self.every_s:
            self.last = time.perf_counter()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed else 0.0
        text = f"replay: {self.done:,} events, {rate:,.0f} events/s, {elapsed:.1f} s"
        if self.total and rate:
            left = max(self.total - self.done, 0) / rate
            text += f", {100 * self.done / self.total:.0f}% of {self.total:,}, ETA {left:.0f} s"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet:
            print(self.line(), file=sys.stderr, flush=True)


@dataclass
class Difference:
    table: str
    only_live: int
    only_shadow: int


@dataclass
class Verification:
    differences: list[Difference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


def _table_columns(client: Any, database: str, table: str) -> list[str]:
    rows = client.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table},
    ).result_rows
    return [r[0] for r in rows]


def _columns(client: Any, database: str, table: str) -> list[str]:
    """The columns verify compares."""
    return [c for c in _table_columns(client, database, table) if c not in COMPARED[table]]


def verify(client: Any, live: str, shadow: str) -> Verification:
    """Row-for-row comparison of record content, per table, in both directions."""
    Target(live), Target(shadow)
    result = Verification()
    for table in COMPARED:
        columns = ", ".join(f"`{c}`" for c in _columns(client, live, table))
        where = _COMPARED_ROWS.get(table, "")

        def count(a: str, b: str, columns: str = columns, table: str = table, where: str = where) -> int:
            sql = (
                f"SELECT count() FROM (SELECT {columns} FROM {a}.{table} FINAL{where.format(db=a)} "  # noqa: S608
                f"EXCEPT SELECT {columns} FROM {b}.{table} FINAL{where.format(db=b)})"
            )
            return int(client.query(sql).result_rows[0][0])

        only_live, only_shadow = count(live, shadow), count(shadow, live)
        if only_live or only_shadow:
            result.differences.append(Difference(table, only_live, only_shadow))
    return result


def swap(client: Any, live: str, shadow: str, verification: Verification | None, force: bool = False) -> None:
    """Exchange every table of ``live`` and ``shadow`` (each exchange is atomic)."""
    if not force and (verification is None or not verification.clean):
        found = (
            "not verified"
            if verification is None
            else "; ".join(
                f"{d.table}: {d.only_live} rows only live, {d.only_shadow} only in the replay"
                for d in verification.differences
            )
        )
        raise JobprovError(f"refusing to swap ({found}): only a clean verification swaps (or force)")
    Target(live), Target(shadow)
    migrate(client, Target(live))
    for table in COMPARED:
        client.command(f"EXCHANGE TABLES {live}.{table} AND {shadow}.{table}")


def from_topic(
    bootstrap: str, topic: str, idle_timeout_s: float = 5.0, kafka_config: Mapping[str, str] | None = None
) -> Iterator[RawEvent]:
    """Every message of a topic from the beginning; ends after ``idle_timeout_s`` without a message.
    High watermarks are never consulted (some brokers report them wrong). ``kafka_config``: librdkafka
    security properties (``ProcessorSettings.kafka_config()``)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "jobprov-replay", "enable.auto.commit": False,
                         "log_level": 0, **(kafka_config or {})})  # fmt: skip
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise JobprovError(f"no topic {topic!r} at {bootstrap}")
        consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
        last = time.monotonic()
        while time.monotonic() - last < idle_timeout_s:
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error():
                    continue
                last = time.monotonic()
                yield RawEvent(msg.value() or b"", topic, msg.partition() or 0, msg.offset() or 0)
    finally:
        consumer.close()
