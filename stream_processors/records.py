"""Derived records: what the fold hands to the sinks.

Every record carries ``fold_version`` (the fold code's version) and ``state_version`` (how many distinct events
of its job had been folded when it was made). A sink keeps, per ``key()``, the row with the highest
``state_version``: redelivered or replayed records then change nothing, and re-emitted records (a metric
re-bucketed after late provenance) replace the old ones.

Records are plain slotted dataclasses, not frozen ones: a frozen dataclass sets each field through
``object.__setattr__`` and costs twice as much to build, on the fold's hottest path. Treat them as immutable;
records may share dict values (tags, bucket keys) with the fold's state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

FOLD_VERSION = 1


@dataclass(slots=True)
class JobState:
    KIND: ClassVar[str] = "job_state"
    job_id: str
    name: str | None
    kind: str | None
    status: str
    attempts: int
    submitted_at_ms: int | None
    started_at_ms: int | None
    finished_at_ms: int | None
    last_event_at_ms: int
    exit_code: int | None
    signal: int | None
    exception_type: str | None
    exception_message: str | None
    host: str | None
    duration_ms: int | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    peak_rss_bytes: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    parent_job_id: str | None
    workflow_id: str | None
    dag_node: str | None
    submitter: str | None
    scheduler_ids: dict[str, str]
    attempt_statuses: dict[str, str]
    anomalies: list[str]
    event_count: int
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id,)


@dataclass(slots=True)
class AttemptState:
    """One attempt of a job as its own facts: where and when it ran and how it ended. ``status`` is the attempt's
    own outcome (a failed attempt stays ``failed`` after a successful retry; ``superseded`` says a later attempt
    exists). ``duration_ms`` is this attempt's run time (its start to its end); the job's wall time runs from its
    first attempt's start to its last attempt's end. ``caveats`` are those of the attempt's steps."""

    KIND: ClassVar[str] = "attempt_state"
    job_id: str
    attempt: int
    status: str
    superseded: bool
    host: str | None
    submitted_at_ms: int | None
    started_at_ms: int | None
    finished_at_ms: int | None
    duration_ms: int | None
    exit_code: int | None
    signal: int | None
    exception_type: str | None
    exception_message: str | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    peak_rss_bytes: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    caveats: list[str]
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, str(self.attempt))


@dataclass(slots=True)
class ProvenanceRecord:
    KIND: ClassVar[str] = "provenance"
    job_id: str
    values: dict[str, str]
    default_bucket: str
    config_snapshot_uri: str | None
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id,)


@dataclass(slots=True)
class MetricPoint:
    KIND: ClassVar[str] = "metric_point"
    job_id: str
    event_id: str
    metric: str
    value: float
    unit: str | None
    time_ms: int
    attempt: int
    step: str | None
    tags: dict[str, str]
    bucket: str
    bucket_keys: dict[str, str]
    registry_version: str
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id)


@dataclass(slots=True)
class BucketMove:
    """Late provenance changed a key the job's metric points are bucketed by: every point of the job already
    stored moves to the bucket :func:`~jobprov.stream_processors.comparability.bucket_for` gives with this
    provenance (a point keeps its bucket key names and tags; its attempt picks the values). The fold keeps no
    metric values, so the sink, which holds the points, applies the move (:meth:`mover`); the moved points
    take this record's ``state_version``. Points emitted after it are bucketed with the new provenance already.
    """

    KIND: ClassVar[str] = "bucket_move"
    job_id: str
    provenance: dict[str, dict[str, str]]
    """Attempt number (as text) -> the job's provenance as that attempt sees it, for every attempt that declared
    some: a later attempt that declared nothing sees the latest earlier one's."""
    state_version: int
    points: int = 0
    """How many metric points the job had when the move was made: a sink that holds that many of them unwritten
    moves them where they are, with no need to read the store."""
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id,)

    def values_for(self, attempt: int) -> dict[str, str]:
        eligible = [int(a) for a in self.provenance if int(a) <= attempt]
        return self.provenance[str(max(eligible))] if eligible else {}

    def apply(self, point: MetricPoint) -> MetricPoint | None:
        """The point moved by this provenance, or None when its bucket stays."""
        return self.mover()(point)

    def mover(self) -> Callable[[MetricPoint], MetricPoint | None]:
        """:meth:`apply` for many points: a job's points share a few key sets and tags, so each bucket is computed
        once (a fingerprint costs more than the rest of a move)."""
        from jobprov.stream_processors.comparability import bucket_for

        buckets: dict[tuple[int, tuple[str, ...], tuple[tuple[str, str], ...]], tuple[dict[str, str], str]] = {}
        version = self.state_version

        def move(point: MetricPoint) -> MetricPoint | None:
            tags = point.tags
            memo = (point.attempt, tuple(point.bucket_keys), tuple(tags.items()) if tags else ())
            found = buckets.get(memo)
            if found is None:
                found = buckets[memo] = bucket_for(point.bucket_keys, self.values_for(point.attempt), tags)
            chosen, bucket = found
            if bucket == point.bucket:
                return None
            # Built field by field: copy.copy of a slots dataclass goes through __reduce_ex__, three times slower.
            p = point
            return MetricPoint(p.job_id, p.event_id, p.metric, p.value, p.unit, p.time_ms, p.attempt, p.step, p.tags,
                               bucket, chosen, p.registry_version, version, p.fold_version)  # fmt: skip

        return move


@dataclass(slots=True)
class ResourcePoint:
    KIND: ClassVar[str] = "resource_point"
    job_id: str
    event_id: str
    time_ms: int
    attempt: int
    cpu_user_s: float
    cpu_system_s: float
    rss_bytes: int
    peak_rss_bytes: int
    io_read_bytes: int | None
    io_write_bytes: int | None
    threads: int
    processes: int
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id)


@dataclass(slots=True)
class LineageEdge:
    """``src -[relation]-> dst``: job produced artifact, artifact used by job, parent job spawned child job,
    workflow contains job. Nodes are ``job:<id>``, ``artifact:<uri>`` or ``workflow:<id>``."""

    KIND: ClassVar[str] = "lineage_edge"
    src: str
    dst: str
    relation: str
    job_id: str
    event_id: str
    time_ms: int
    role: str | None
    checksum: str | None
    size_bytes: int | None
    step: str | None
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id, self.relation)


@dataclass(slots=True)
class AnnotationRecord:
    KIND: ClassVar[str] = "annotation"
    job_id: str  # the job whose emitter recorded it
    event_id: str
    target_type: str
    target: str
    key_name: str
    value: str
    author: str | None
    time_ms: int
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id)


@dataclass(slots=True)
class StepState:
    KIND: ClassVar[str] = "step_state"
    job_id: str
    name: str
    step_attempt: int
    attempt: int
    status: str
    parent_step: str | None
    started_at_ms: int | None
    finished_at_ms: int | None
    exception_type: str | None
    exception_message: str | None
    caveats: list[str] = field(default_factory=list)
    state_version: int = 0
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, str(self.attempt), self.name, str(self.step_attempt))


@dataclass(slots=True)
class AlertState:
    """An alert as its events make it: what the detector found (``AlertRaised``) and the latest triage
    (``AlertTriaged``; ``untriaged`` before any). One row per alert: its key travels as the alert's job id."""

    KIND: ClassVar[str] = "alert"
    alert_id: str
    metric: str
    bucket: str
    label: dict[str, str]
    unit: str | None
    method: str
    direction: str
    last_good_job: str
    first_bad_job: str
    first_bad_event: str
    change_time_ms: int
    before: float
    size: float
    relative_size: float | None
    confidence: float | None
    changes: list[str]
    raised_at_ms: int
    state: str
    note: str | None
    author: str | None
    triaged_at_ms: int | None
    triages: int
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.alert_id,)


@dataclass(slots=True)
class EventRecord:
    """The raw event, as the log has it: the sinks' durable copy of the log (replay can start from it)."""

    KIND: ClassVar[str] = "event"
    event_id: str
    job_id: str
    event_type: str
    event_time_ms: int
    emitted_at_ms: int
    producer: str
    producer_instance: str
    seq: int
    attempt: int
    raw: bytes
    state_version: int = 0
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id)


@dataclass(slots=True)
class ResidentJob:
    """A worker's checkpoint, not derived from the log: the job entered (``resident``) or left the memory of the
    worker of ``partition``. ``state_version`` orders the rows of one job (the worker's clock, in ns)."""

    KIND: ClassVar[str] = "resident_job"
    topic: str
    partition: int
    job_id: str
    resident: bool
    state_version: int

    def key(self) -> tuple[str, ...]:
        return (self.topic, str(self.partition), self.job_id)


@dataclass(slots=True)
class JobSnapshot:
    """A worker's checkpoint, not derived from the log: a job's fold state (``snapshots.dump``) as of
    ``state_version``, made with this fold and registry version, so the job comes back without a re-fold."""

    KIND: ClassVar[str] = "job_snapshot"
    job_id: str
    state: bytes
    registry_version: str
    state_version: int
    fold_version: int = FOLD_VERSION

    def key(self) -> tuple[str, ...]:
        return (self.job_id,)


@dataclass(slots=True)
class PartitionWatermark:
    """A worker's checkpoint, not derived from the log: the newest event time folded from ``partition``
    (``state_version``: a sink keeps the highest)."""

    KIND: ClassVar[str] = "partition_watermark"
    topic: str
    partition: int
    state_version: int

    def key(self) -> tuple[str, ...]:
        return (self.topic, str(self.partition))


Record = (
    EventRecord
    | JobState
    | AttemptState
    | ProvenanceRecord
    | MetricPoint
    | BucketMove
    | ResourcePoint
    | LineageEdge
    | AnnotationRecord
    | StepState
    | AlertState
    | ResidentJob
    | JobSnapshot
    | PartitionWatermark
)
RECORD_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (
        EventRecord,
        JobState,
        AttemptState,
        ProvenanceRecord,
        MetricPoint,
        BucketMove,
        ResourcePoint,
        LineageEdge,
        AnnotationRecord,
        StepState,
        AlertState,
        ResidentJob,
        JobSnapshot,
        PartitionWatermark,
    )
}


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in RECORD_TYPES.values()
}


def content_of(record: Record) -> Record:
    """The part of a record that must converge whatever the arrival order: without ``state_version`` (how
    many events had been folded when it was made)."""
    return dataclasses.replace(record, state_version=0)


def materialize(records: Iterable[Record]) -> dict[tuple[str, tuple[str, ...]], Record]:
    """What an idempotent sink holds after taking ``records`` in order: per key the record with the highest
    ``state_version``, with every :class:`BucketMove` applied to the points taken before it, not kept (the reference
    semantics the ClickHouse sink implements, for tests and for readers of the derived-records topic)."""
    kept: dict[tuple[str, tuple[str, ...]], Record] = {}
    points_of: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for record in records:
        key = (record.KIND, record.key())
        if isinstance(record, BucketMove):
            move = record.mover()
            for point_key in points_of.get(record.job_id, ()):
                point = kept[point_key]
                assert isinstance(point, MetricPoint)
                moved = move(point)
                if moved is not None and moved.state_version >= point.state_version:
                    kept[point_key] = moved
            continue  # a move is an instruction, not a row: what it leaves depends on what came before it
        current = kept.get(key)
        if current is None or current.state_version <= record.state_version:
            kept[key] = record
        if isinstance(record, MetricPoint):
            points_of.setdefault(record.job_id, set()).add(key)
    return kept


def to_json_dict(record: Record) -> dict[str, Any]:
    """A record as plain JSON-able data, with its kind: ``{"kind": ..., "record": {...}}``."""
    names = _FIELD_NAMES[type(record)]
    return {"kind": record.KIND, "record": {name: getattr(record, name) for name in names}}


def from_json_dict(data: dict[str, Any]) -> Record:
    cls = RECORD_TYPES[data["kind"]]
    record: Record = cls(**data["record"])
    return record
