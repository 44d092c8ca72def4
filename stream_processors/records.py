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
    replaces_bucket: str | None = None
    """Set when late provenance moved the point: the bucket it was emitted in before (sinks ordered by
    bucket delete the old row)."""

    def key(self) -> tuple[str, ...]:
        return (self.job_id, self.event_id)


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


Record = (
    EventRecord | JobState | ProvenanceRecord | MetricPoint | ResourcePoint | LineageEdge | AnnotationRecord | StepState
)
RECORD_TYPES: dict[str, type[Any]] = {
    cls.KIND: cls
    for cls in (
        EventRecord,
        JobState,
        ProvenanceRecord,
        MetricPoint,
        ResourcePoint,
        LineageEdge,
        AnnotationRecord,
        StepState,
    )
}


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in RECORD_TYPES.values()
}


def content_of(record: Record) -> Record:
    """The part of a record that must converge whatever the arrival order: without ``state_version`` (how
    many events had been folded when it was made) and ``replaces_bucket`` (the move that produced it)."""
    if isinstance(record, MetricPoint):
        return dataclasses.replace(record, state_version=0, replaces_bucket=None)
    return dataclasses.replace(record, state_version=0)


def to_json_dict(record: Record) -> dict[str, Any]:
    """A record as plain JSON-able data, with its kind: ``{"kind": ..., "record": {...}}``."""
    names = _FIELD_NAMES[type(record)]
    return {"kind": record.KIND, "record": {name: getattr(record, name) for name in names}}


def from_json_dict(data: dict[str, Any]) -> Record:
    cls = RECORD_TYPES[data["kind"]]
    record: Record = cls(**data["record"])
    return record
