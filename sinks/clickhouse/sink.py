"""The ClickHouse sink: buffers derived records per table and inserts them in batches at flush.

- One code path for the embedded engine (``chdb:///dir``) and a server (``http(s)://host:8123``), through
  clickhouse-connect.
- ``write`` buffers records (no I/O); ``flush`` turns each table's records into columns and inserts them, and
  clears a buffer only once its insert succeeded; ``detach`` hands a batch over to be flushed in another thread.
  The worker commits offsets once their flush is durable.
- Redelivered or replayed records create no visible duplicates: tables are ReplacingMergeTree by record key
  and ``state_version``; reads use FINAL. A :class:`BucketMove` (late provenance) moves the job's points that
  wait in the buffer at once; when some were written by an earlier flush, it is applied again after this flush's
  points: the job's stored points are read back (by the ``job_id`` skip index), and each point whose bucket
  changes is written in its new bucket and deleted (``is_deleted = 1``) from its old one.
- The workers' checkpoints (:class:`ResidentJob`, :class:`JobSnapshot`, :class:`PartitionWatermark`) are written
  in the same flush as the records of their batch, and after them and after the events (see ``TABLES``): whatever
  a flush cut short leaves in the store, a job brought back from it has all the records of what it folded.
- ``buckets`` (a metric's buckets with their key values and unit: the series' labels) gets a row the first
  time this sink sees a bucket, not one per point: a bucket's keys never change (its id is their fingerprint),
  and rows written again (a redelivery, another worker, a restart) are one row after deduplication.
- When the store is unreachable or overloaded, ``flush`` raises :class:`SinkBackpressure` and keeps the buffer:
  the worker waits and retries; nothing is lost. Other errors raise :class:`SinkError`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from jobprov.errors import SinkError
from jobprov.sinks.base import SinkBackpressure
from jobprov.sinks.clickhouse.client import is_unavailable
from jobprov.stream_processors.records import (
    AlertState,
    AnnotationRecord,
    AttemptState,
    BucketMove,
    EventRecord,
    JobSnapshot,
    JobState,
    LineageEdge,
    MetricPoint,
    PartitionWatermark,
    ProvenanceRecord,
    Record,
    ResidentJob,
    ResourcePoint,
    StepState,
)

log = logging.getLogger("jobprov.sink.clickhouse")

Row = tuple[Any, ...]


@dataclass(frozen=True)
class TableSpec:
    """A table the sink writes: its columns, each with the record attribute it comes from (None: the constant 0,
    e.g. ``is_deleted`` of a point written where it belongs)."""

    name: str
    columns: tuple[tuple[str, str | None], ...]

    @property
    def column_names(self) -> list[str]:
        return [column for column, _ in self.columns]

    def columns_of(self, records: Sequence[Any]) -> list[list[Any]]:
        """The records as columns. Times stay integer epoch milliseconds: the driver writes them as they are."""
        return [list(map(attrgetter(attr), records)) if attr else [0] * len(records) for _, attr in self.columns]


def _same(*names: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((name, name) for name in names)


# In the order a flush writes them: the derived records (and the bucket moves), then the events they came from,
# then the workers' checkpoints (_AFTER_THE_RECORDS). A flush cut short (a killed worker) so leaves no stored event,
# and no checkpoint, whose records are not stored: a job brought back from either (its snapshot, or its stored
# events folded again) has every record of what it has folded, and the redelivered events it skips as seen need
# none.
TABLES: dict[type[Any], TableSpec] = {
    JobState: TableSpec(
        "jobs",
        (
            *_same("job_id", "name", "kind", "status", "attempts"),
            ("submitted_at", "submitted_at_ms"),
            ("started_at", "started_at_ms"),
            ("finished_at", "finished_at_ms"),
            ("last_event_at", "last_event_at_ms"),
            *_same("exit_code", "signal", "exception_type", "exception_message", "host", "duration_ms"),
            *_same("cpu_user_s", "cpu_system_s", "peak_rss_bytes", "io_read_bytes", "io_write_bytes"),
            *_same("parent_job_id", "workflow_id", "dag_node", "submitter", "scheduler_ids", "attempt_statuses"),
            *_same("anomalies", "event_count", "state_version", "fold_version"),
        ),
    ),
    AttemptState: TableSpec(
        "attempts",
        (
            *_same("job_id", "attempt", "status", "superseded", "host"),
            ("submitted_at", "submitted_at_ms"),
            ("started_at", "started_at_ms"),
            ("finished_at", "finished_at_ms"),
            *_same("duration_ms", "exit_code", "signal", "exception_type", "exception_message"),
            *_same("cpu_user_s", "cpu_system_s", "peak_rss_bytes", "io_read_bytes", "io_write_bytes", "caveats"),
            *_same("state_version", "fold_version"),
        ),
    ),
    ProvenanceRecord: TableSpec(
        "provenance",
        _same("job_id", "values", "default_bucket", "config_snapshot_uri", "state_version", "fold_version"),
    ),
    MetricPoint: TableSpec(
        "metric_points",
        (
            *_same("metric", "bucket"),
            ("time", "time_ms"),
            *_same("job_id", "event_id", "value", "unit", "attempt", "step", "tags", "bucket_keys"),
            *_same("registry_version", "state_version"),
            ("is_deleted", None),
            ("fold_version", "fold_version"),
        ),
    ),
    ResourcePoint: TableSpec(
        "resources",
        (
            *_same("job_id", "event_id"),
            ("time", "time_ms"),
            *_same("attempt", "cpu_user_s", "cpu_system_s", "rss_bytes", "peak_rss_bytes", "io_read_bytes"),
            *_same("io_write_bytes", "threads", "processes", "state_version", "fold_version"),
        ),
    ),
    LineageEdge: TableSpec(
        "lineage",
        (
            *_same("src", "dst", "relation", "job_id", "event_id"),
            ("time", "time_ms"),
            *_same("role", "checksum", "size_bytes", "step", "state_version", "fold_version"),
        ),
    ),
    AnnotationRecord: TableSpec(
        "annotations",
        (
            *_same("target_type", "target", "key_name", "value", "author"),
            ("time", "time_ms"),
            *_same("job_id", "event_id", "state_version", "fold_version"),
        ),
    ),
    StepState: TableSpec(
        "steps",
        (
            *_same("job_id", "attempt", "name", "step_attempt", "status", "parent_step"),
            ("started_at", "started_at_ms"),
            ("finished_at", "finished_at_ms"),
            *_same("exception_type", "exception_message", "caveats", "state_version", "fold_version"),
        ),
    ),
    AlertState: TableSpec(
        "alerts",
        (
            *_same("alert_id", "metric", "bucket", "label", "unit", "method", "direction", "last_good_job"),
            *_same("first_bad_job", "first_bad_event"),
            ("change_time", "change_time_ms"),
            *_same("before", "size", "relative_size", "confidence", "changes"),
            ("raised_at", "raised_at_ms"),
            *_same("state", "note", "author"),
            ("triaged_at", "triaged_at_ms"),
            *_same("triages", "state_version", "fold_version"),
        ),
    ),
    EventRecord: TableSpec(
        "events",
        (
            *_same("event_id", "job_id", "event_type"),
            ("event_time", "event_time_ms"),
            ("emitted_at", "emitted_at_ms"),
            *_same("producer", "producer_instance", "seq", "attempt", "raw"),
        ),
    ),
    ResidentJob: TableSpec(
        "resident_jobs", (*_same("topic", "partition", "job_id", "resident"), ("version", "state_version"))
    ),
    JobSnapshot: TableSpec("job_states", _same("job_id", "state", "registry_version", "state_version", "fold_version")),
    PartitionWatermark: TableSpec(
        "partition_watermarks", (*_same("topic", "partition"), ("max_event_time_ms", "state_version"))
    ),
}
_AFTER_THE_RECORDS = (EventRecord, ResidentJob, JobSnapshot, PartitionWatermark)
_POINTS = TABLES[MetricPoint]
_BUCKETS = TableSpec("buckets", (*_same("metric", "bucket"), ("keys", "bucket_keys"), ("unit", "unit")))
# Buckets this sink has written, remembered to write each once; past this many it starts over (forgetting only
# costs a row written again).
_REMEMBERED_BUCKETS = 100_000


def _insert(client: Any, table: str, rows: list[Row], columns: Sequence[str]) -> None:
    """Insert rows; an unreachable or overloaded store is backpressure, anything else a sink error."""
    with _store_errors(table):
        client.insert(table, rows, column_names=list(columns))


@contextmanager
def _store_errors(table: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise SinkBackpressure(f"ClickHouse unavailable: {exc}", retry_after=1.0) from exc
        raise SinkError(f"writing {table} failed: {exc}") from exc


class _Batch:
    """Records written between two detaches, per table, with the bucket moves waiting for their flush. Written
    to the store by :meth:`flush` (any thread, one flush of a sink at a time); a failed flush leaves what it did
    not insert, and flushing it again goes on from there."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self.buffers: dict[type[Any], list[Record]] = {}
        self.points_of: dict[str, list[int]] = {}  # job id -> positions of its points in the points buffer
        self.moves: dict[str, BucketMove] = {}

    def flush(self, timeout: float) -> None:
        self.sink._write_batch(self)


class ClickHouseSink:
    name = "clickhouse"
    wants_events = True  # the events table is the store's durable copy of the log

    def __init__(
        self, client: Any, database: str = "jobprov", max_buffered_rows: int = 200_000, *, writer: Any = None
    ) -> None:
        """``writer``: the connection flushes write through (default ``client``); its own when batches are
        flushed in another thread while ``client`` serves reads (clickhouse-connect clients are not shared)."""
        self.client = client
        self.writer = client if writer is None else writer
        self.database = database
        self._open = _Batch(self)
        self._failed: list[_Batch] = []  # detached by flush() and not (all) written: first at the next one
        self._max = max_buffered_rows
        self.inserted = 0
        self._column_types: dict[str, Any] = {}  # table -> its columns' types, as described once
        self._buckets_written: set[tuple[str, str]] = set()
        self._buckets_pending: dict[tuple[str, str], MetricPoint] = {}

    def write(self, records: Sequence[Record]) -> None:
        batch = self._open
        buffers = batch.buffers
        for record in records:
            kind = type(record)
            if kind is BucketMove:
                assert isinstance(record, BucketMove)
                self._move(record)
                continue
            buffer = buffers.get(kind)
            if buffer is None:
                buffer = buffers[kind] = []
            if kind is MetricPoint:
                assert isinstance(record, MetricPoint)
                batch.points_of.setdefault(record.job_id, []).append(len(buffer))
            buffer.append(record)

    def _move(self, move: BucketMove) -> None:
        """Move the job's points that wait in the buffer; when that is not all of them (some were written by an
        earlier flush, or wait in a detached batch), the move waits for the flush, which moves the stored ones
        too (flushes are one at a time, in order: the earlier points are stored by then)."""
        batch = self._open
        points = batch.buffers.get(MetricPoint, [])
        positions = [i for i in batch.points_of.get(move.job_id, ()) if points[i].state_version <= move.state_version]
        mover = move.mover()
        for i in positions:
            moved = mover(points[i])  # type: ignore[arg-type]
            if moved is not None:
                points[i] = moved
        if len(positions) < move.points:
            current = batch.moves.get(move.job_id)
            if current is None or current.state_version <= move.state_version:
                batch.moves[move.job_id] = move

    def _pend_bucket(self, point: MetricPoint) -> None:
        bucket = (point.metric, point.bucket)
        if bucket not in self._buckets_written and bucket not in self._buckets_pending:
            self._buckets_pending[bucket] = point

    def _insert_columns(self, spec: TableSpec, records: Sequence[Any], columns: list[list[Any]] | None = None) -> None:
        """One column-wise insert, the table described once (its column types kept, not re-read per insert).

        Each insert gets a new insert context, emptied once the insert is done: a reused context keeps its last
        block's columns (clickhouse-connect resets only ``data``), which held a flush's worth of records, and
        the interpreter's arenas they were allocated in, alive until the table's next insert."""
        table = f"{self.database}.{spec.name}"
        with _store_errors(table):
            writer = self.writer
            types = self._column_types.get(spec.name)
            if types is None:
                described = writer.create_insert_context(table, spec.column_names, column_oriented=True)
                types = self._column_types[spec.name] = described.column_types
            context = writer.create_insert_context(table, spec.column_names, column_types=types, column_oriented=True)
            try:
                writer.insert(data=columns if columns is not None else spec.columns_of(records), context=context)
            finally:
                # The context refers to itself (it keeps one of its bound methods), so dropped it would wait, with
                # the columns it holds, for the collector's next pass: its attributes go now.
                vars(context).clear()
        self.inserted += len(records)

    def detach(self) -> _Batch:
        """What was written since the last detach, to be made durable by its ``flush`` (in another thread if need
        be) while writes go on into a new batch. Batches must be flushed one at a time, in detach order."""
        batch, self._open = self._open, _Batch(self)
        return batch

    def flush(self, timeout: float) -> None:
        pending, self._failed = [*self._failed, self.detach()], []
        for i, batch in enumerate(pending):
            try:
                batch.flush(timeout)
            except BaseException:
                self._failed = pending[i:]
                raise

    def _write_batch(self, batch: _Batch) -> None:
        for point in batch.buffers.get(MetricPoint, ()):  # where the points are written, moves applied
            self._pend_bucket(point)  # type: ignore[arg-type]
        kinds = [kind for kind in TABLES if kind in batch.buffers]  # in TABLES's order: see there
        for kind in [kind for kind in kinds if kind not in _AFTER_THE_RECORDS]:
            self._insert_buffer(batch, kind)
        # After the points they move (those of this flush included).
        if batch.moves:
            self._apply_moves(list(batch.moves.values()))
            batch.moves = {}
        # After the points. Should this insert fail, the rows stay pending for the next flush (meanwhile the query
        # layer labels a bucket missing here from one of its points).
        if self._buckets_pending:
            self._insert_columns(_BUCKETS, list(self._buckets_pending.values()))
            if len(self._buckets_written) > _REMEMBERED_BUCKETS:
                self._buckets_written.clear()
            self._buckets_written.update(self._buckets_pending)
            self._buckets_pending = {}
        for kind in [kind for kind in kinds if kind in _AFTER_THE_RECORDS]:
            self._insert_buffer(batch, kind)

    def _insert_buffer(self, batch: _Batch, kind: type[Any]) -> None:
        records = batch.buffers[kind]
        if records:
            self._insert_columns(TABLES[kind], records)
        del batch.buffers[kind]  # only what was inserted leaves the buffer
        if kind is MetricPoint:
            batch.points_of = {}

    def _apply_moves(self, moves: list[BucketMove]) -> None:
        """Move the stored points of the moves' jobs: each moved point is written in its new bucket and deleted
        from its old one, both at the move's ``state_version`` (a point stored after the move is left alone)."""
        by_job = {move.job_id: move for move in moves}
        names = [column for column, _ in _POINTS.columns if column != "is_deleted"]
        select = ", ".join("toUnixTimestamp64Milli(time)" if c == "time" else f"`{c}`" for c in names)
        with _store_errors(f"{self.database}.metric_points"):
            rows = self.writer.query(
                f"SELECT {select} FROM {self.database}.metric_points FINAL "  # noqa: S608 - checked identifier
                "WHERE job_id IN {jobs:Array(String)} AND is_deleted = 0",
                parameters={"jobs": list(by_job)},
            ).result_rows
        attrs = [attr for column, attr in _POINTS.columns if column != "is_deleted"]
        moved: list[MetricPoint] = []
        deleted: list[MetricPoint] = []
        movers = {job_id: move.mover() for job_id, move in by_job.items()}
        for row in rows:
            point = MetricPoint(**dict(zip(attrs, row, strict=True)))  # type: ignore[arg-type]
            move = by_job[point.job_id]
            if point.state_version > move.state_version:
                continue
            new = movers[point.job_id](point)
            if new is not None:
                moved.append(new)
                deleted.append(dataclasses.replace(point, state_version=move.state_version))
        if not moved:
            return
        columns = _POINTS.columns_of(moved + deleted)
        columns[_POINTS.column_names.index("is_deleted")] = [0] * len(moved) + [1] * len(deleted)
        self._insert_columns(_POINTS, moved + deleted, columns)
        for point in moved:
            self._pend_bucket(point)

    @property
    def buffered(self) -> int:
        return sum(len(v) for batch in (*self._failed, self._open) for v in batch.buffers.values())

    def close(self) -> None:
        for client in {id(self.client): self.client, id(self.writer): self.writer}.values():
            try:
                client.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing the ClickHouse client: %s", exc)


class ClickHouseDeadLetters:
    """Dead letters into ``dead_letters`` (keyed by source position, so a redelivery is one row)."""

    _COLUMNS = ("source_topic", "source_partition", "source_offset", "reason", "detail", "raw")

    def __init__(self, client: Any, database: str = "jobprov") -> None:
        self.client = client
        self.database = database
        self._rows: list[Row] = []

    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None:
        self._rows.append((topic, partition, offset, reason, detail[:1000], value))

    def flush(self, timeout: float) -> None:
        if not self._rows:
            return
        _insert(self.client, f"{self.database}.dead_letters", self._rows, self._COLUMNS)
        self._rows = []
