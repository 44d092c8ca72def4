"""The ClickHouse sink: buffers derived records per table and inserts them in batches at flush.

- One code path for the embedded engine (``chdb:///dir``) and a server (``http(s)://host:8123``), through
  clickhouse-connect.
- ``write`` buffers (no I/O); ``flush`` inserts every buffered table, column-wise, and clears the buffer only
  once the inserts succeeded. The worker flushes before it commits offsets.
- Redelivered or replayed records create no visible duplicates: tables are ReplacingMergeTree by record key
  and ``state_version``; reads use FINAL. A metric point moved to another bucket by late provenance also
  writes a delete row (``is_deleted = 1``) for its old bucket.
- ``buckets`` (a metric's buckets with their key values and unit: the series' labels) gets a row the first
  time this sink sees a bucket, not one per point: a bucket's keys never change (its id is their fingerprint),
  and rows written again (a redelivery, another worker, a restart) are one row after deduplication.
- When the store is unreachable or overloaded, ``flush`` raises :class:`SinkBackpressure` and keeps the buffer:
  the worker waits and retries; nothing is lost. Other errors raise :class:`SinkError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from jobprov.errors import SinkError
from jobprov.sinks.base import SinkBackpressure
from jobprov.sinks.clickhouse.client import is_unavailable
from jobprov.stream_processors.records import (
    AnnotationRecord,
    EventRecord,
    JobState,
    LineageEdge,
    MetricPoint,
    ProvenanceRecord,
    Record,
    ResourcePoint,
    StepState,
)

log = logging.getLogger("jobprov.sink.clickhouse")

Row = tuple[Any, ...]

_EVENT_COLUMNS = (
    "event_id",
    "job_id",
    "event_type",
    "event_time",
    "emitted_at",
    "producer",
    "producer_instance",
    "seq",
    "attempt",
    "raw",
)
_JOB_COLUMNS = (
    "job_id",
    "name",
    "kind",
    "status",
    "attempts",
    "submitted_at",
    "started_at",
    "finished_at",
    "last_event_at",
    "exit_code",
    "signal",
    "exception_type",
    "exception_message",
    "host",
    "duration_ms",
    "cpu_user_s",
    "cpu_system_s",
    "peak_rss_bytes",
    "io_read_bytes",
    "io_write_bytes",
    "parent_job_id",
    "workflow_id",
    "dag_node",
    "submitter",
    "scheduler_ids",
    "attempt_statuses",
    "anomalies",
    "event_count",
    "state_version",
    "fold_version",
)
_PROVENANCE_COLUMNS = ("job_id", "values", "default_bucket", "config_snapshot_uri", "state_version", "fold_version")
_METRIC_COLUMNS = (
    "metric",
    "bucket",
    "time",
    "job_id",
    "event_id",
    "value",
    "unit",
    "attempt",
    "step",
    "tags",
    "bucket_keys",
    "registry_version",
    "state_version",
    "is_deleted",
    "fold_version",
)
_RESOURCE_COLUMNS = (
    "job_id",
    "event_id",
    "time",
    "attempt",
    "cpu_user_s",
    "cpu_system_s",
    "rss_bytes",
    "peak_rss_bytes",
    "io_read_bytes",
    "io_write_bytes",
    "threads",
    "processes",
    "state_version",
    "fold_version",
)
_LINEAGE_COLUMNS = (
    "src",
    "dst",
    "relation",
    "job_id",
    "event_id",
    "time",
    "role",
    "checksum",
    "size_bytes",
    "step",
    "state_version",
    "fold_version",
)
_ANNOTATION_COLUMNS = (
    "target_type",
    "target",
    "key_name",
    "value",
    "author",
    "time",
    "job_id",
    "event_id",
    "state_version",
    "fold_version",
)
_STEP_COLUMNS = (
    "job_id",
    "attempt",
    "name",
    "step_attempt",
    "status",
    "parent_step",
    "started_at",
    "finished_at",
    "exception_type",
    "exception_message",
    "caveats",
    "state_version",
    "fold_version",
)


def _event_rows(r: EventRecord) -> list[Row]:
    return [
        (
            r.event_id,
            r.job_id,
            r.event_type,
            r.event_time_ms,
            r.emitted_at_ms,
            r.producer,
            r.producer_instance,
            r.seq,
            r.attempt,
            r.raw,
        )
    ]


def _job_rows(r: JobState) -> list[Row]:
    return [
        (
            r.job_id,
            r.name,
            r.kind,
            r.status,
            r.attempts,
            r.submitted_at_ms,
            r.started_at_ms,
            r.finished_at_ms,
            r.last_event_at_ms,
            r.exit_code,
            r.signal,
            r.exception_type,
            r.exception_message,
            r.host,
            r.duration_ms,
            r.cpu_user_s,
            r.cpu_system_s,
            r.peak_rss_bytes,
            r.io_read_bytes,
            r.io_write_bytes,
            r.parent_job_id,
            r.workflow_id,
            r.dag_node,
            r.submitter,
            r.scheduler_ids,
            r.attempt_statuses,
            r.anomalies,
            r.event_count,
            r.state_version,
            r.fold_version,
        )
    ]


def _provenance_rows(r: ProvenanceRecord) -> list[Row]:
    return [(r.job_id, r.values, r.default_bucket, r.config_snapshot_uri, r.state_version, r.fold_version)]


def _metric_rows(r: MetricPoint) -> list[Row]:
    def row(bucket: str, is_deleted: int) -> Row:
        return (
            r.metric,
            bucket,
            r.time_ms,
            r.job_id,
            r.event_id,
            r.value,
            r.unit,
            r.attempt,
            r.step,
            r.tags,
            r.bucket_keys,
            r.registry_version,
            r.state_version,
            is_deleted,
            r.fold_version,
        )

    rows = [row(r.bucket, 0)]
    if r.replaces_bucket and r.replaces_bucket != r.bucket:
        rows.append(row(r.replaces_bucket, 1))
    return rows


def _resource_rows(r: ResourcePoint) -> list[Row]:
    return [
        (
            r.job_id,
            r.event_id,
            r.time_ms,
            r.attempt,
            r.cpu_user_s,
            r.cpu_system_s,
            r.rss_bytes,
            r.peak_rss_bytes,
            r.io_read_bytes,
            r.io_write_bytes,
            r.threads,
            r.processes,
            r.state_version,
            r.fold_version,
        )
    ]


def _lineage_rows(r: LineageEdge) -> list[Row]:
    return [
        (
            r.src,
            r.dst,
            r.relation,
            r.job_id,
            r.event_id,
            r.time_ms,
            r.role,
            r.checksum,
            r.size_bytes,
            r.step,
            r.state_version,
            r.fold_version,
        )
    ]


def _annotation_rows(r: AnnotationRecord) -> list[Row]:
    return [
        (
            r.target_type,
            r.target,
            r.key_name,
            r.value,
            r.author,
            r.time_ms,
            r.job_id,
            r.event_id,
            r.state_version,
            r.fold_version,
        )
    ]


def _step_rows(r: StepState) -> list[Row]:
    return [
        (
            r.job_id,
            r.attempt,
            r.name,
            r.step_attempt,
            r.status,
            r.parent_step,
            r.started_at_ms,
            r.finished_at_ms,
            r.exception_type,
            r.exception_message,
            r.caveats,
            r.state_version,
            r.fold_version,
        )
    ]


# record type -> (table, columns, row maker)
TABLES: dict[type[Any], tuple[str, tuple[str, ...], Callable[[Any], list[Row]]]] = {
    EventRecord: ("events", _EVENT_COLUMNS, _event_rows),
    JobState: ("jobs", _JOB_COLUMNS, _job_rows),
    ProvenanceRecord: ("provenance", _PROVENANCE_COLUMNS, _provenance_rows),
    MetricPoint: ("metric_points", _METRIC_COLUMNS, _metric_rows),
    ResourcePoint: ("resources", _RESOURCE_COLUMNS, _resource_rows),
    LineageEdge: ("lineage", _LINEAGE_COLUMNS, _lineage_rows),
    AnnotationRecord: ("annotations", _ANNOTATION_COLUMNS, _annotation_rows),
    StepState: ("steps", _STEP_COLUMNS, _step_rows),
}


_BUCKET_COLUMNS = ("metric", "bucket", "keys", "unit")
# Buckets this sink has written, remembered to write each once; past this many it starts over (forgetting only
# costs a row written again).
_REMEMBERED_BUCKETS = 100_000


def _insert(client: Any, table: str, rows: list[Row], columns: Sequence[str]) -> None:
    """Insert rows; an unreachable or overloaded store is backpressure, anything else a sink error."""
    try:
        client.insert(table, rows, column_names=list(columns))
    except Exception as exc:
        if is_unavailable(exc):
            raise SinkBackpressure(f"ClickHouse unavailable: {exc}", retry_after=1.0) from exc
        raise SinkError(f"insert into {table} failed: {exc}") from exc


class ClickHouseSink:
    name = "clickhouse"
    wants_events = True  # the events table is the store's durable copy of the log

    def __init__(self, client: Any, database: str = "jobprov", max_buffered_rows: int = 200_000) -> None:
        self.client = client
        self.database = database
        self._buffers: dict[str, list[Row]] = {}
        self._buffered = 0
        self._max = max_buffered_rows
        self.inserted = 0
        self._buckets_written: set[tuple[str, str]] = set()
        self._buckets_pending: dict[tuple[str, str], Row] = {}

    def write(self, records: Sequence[Record]) -> None:
        buffers = self._buffers
        for record in records:
            table, _, rows = TABLES[type(record)]
            buffers.setdefault(table, []).extend(rows(record))
            if type(record) is MetricPoint:
                bucket = (record.metric, record.bucket)
                if bucket not in self._buckets_written and bucket not in self._buckets_pending:
                    self._buckets_pending[bucket] = (record.metric, record.bucket, record.bucket_keys, record.unit)
        self._buffered = sum(len(v) for v in buffers.values())

    def flush(self, timeout: float) -> None:
        columns = {table: cols for table, cols, _ in TABLES.values()}
        for table in list(self._buffers):
            rows = self._buffers[table]
            if not rows:
                continue
            _insert(self.client, f"{self.database}.{table}", rows, columns[table])
            self.inserted += len(rows)
            del self._buffers[table]  # only what was inserted leaves the buffer
        self._buffered = 0
        # After the points. Should this insert fail, the rows stay pending for the next flush (meanwhile the query
        # layer labels a bucket missing here from one of its points).
        if self._buckets_pending:
            _insert(self.client, f"{self.database}.buckets", list(self._buckets_pending.values()), _BUCKET_COLUMNS)
            if len(self._buckets_written) > _REMEMBERED_BUCKETS:
                self._buckets_written.clear()
            self._buckets_written.update(self._buckets_pending)
            self._buckets_pending = {}

    @property
    def buffered(self) -> int:
        return self._buffered

    def close(self) -> None:
        try:
            self.client.close()
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
