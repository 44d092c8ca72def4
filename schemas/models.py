"""Python mirror of the .avsc event model: one frozen dataclass per Avro record.

The .avsc files are the source of truth; ``tests/unit/schemas/test_models_match_avsc.py`` fails on any drift
(field names, order, types, optionality, defaults). Field names are the Avro names, snake_case.
Conversion to and from fastavro's dict form is generic and walks a precomputed plan per class, because
``dataclasses.asdict`` deep-copies and is several times slower on the emitter's hot path.

Times (Avro ``timestamp-millis``) are held as :data:`EpochMillis`, integer milliseconds since the epoch: the wire's
value, kept as it is from the decoder to the sink's columns (a ``datetime`` per event cost the decoder ~2 µs, a
twentieth of an event's processing).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, ClassVar, Union

from jobprov.schemas.codegen import timestamp_millis
from jobprov.schemas.registry import NAMESPACE

JOB_KINDS = ("ci", "batch", "hpc", "pipeline", "interactive")
JOB_STATUSES = ("succeeded", "failed", "aborted", "preempted")
JOB_WAIT_STATUSES = ("queued", "held", "released")
STEP_STATUSES = ("succeeded", "failed", "skipped", "aborted")
ANNOTATION_TARGETS = ("job", "artifact")
ALERT_DIRECTIONS = ("regression", "improvement")
TRIAGE_STATES = ("acknowledged", "invalid", "fixed", "wontfix", "improvement")

# An Avro timestamp-millis field: epoch milliseconds (UTC), an int to the type checker.
EpochMillis = Annotated[int, "timestamp-millis"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_millis(millis: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (integer arithmetic: no float rounding)."""
    return _EPOCH + timedelta(milliseconds=millis)


@dataclass(frozen=True, slots=True)
class Producer:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.Producer"
    name: str
    version: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class JobSubmitted:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.JobSubmitted"
    name: str
    kind: str
    parent_job_id: str | None = None
    workflow_id: str | None = None
    dag_node: str | None = None
    submitter: str | None = None
    scheduler_ids: dict[str, str] = field(default_factory=dict)
    machine: str | None = None
    requested_nodes: int | None = None
    requested_processes: int | None = None


@dataclass(frozen=True, slots=True)
class JobStarted:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.JobStarted"
    host: str
    os: str
    kernel: str
    python: str | None = None
    cwd: str = field(kw_only=True)
    command_line: list[str] = field(default_factory=list)
    container_image: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.Dataset"
    name: str
    version: str | None = None
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class ConfigRef:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.ConfigRef"
    hash: str
    snapshot_uri: str | None = None


@dataclass(frozen=True, slots=True)
class GitInfo:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.GitInfo"
    commit: str
    branch: str | None = None
    dirty: bool | None = None
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class ProvenanceDeclared:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.ProvenanceDeclared"
    values: dict[str, str] = field(default_factory=dict)
    datasets: list[Dataset] = field(default_factory=list)
    config: ConfigRef | None = None
    software: dict[str, str] = field(default_factory=dict)
    git: GitInfo | None = None
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResourceSample:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.ResourceSample"
    cpu_user_s: float
    cpu_system_s: float
    rss_bytes: int
    peak_rss_bytes: int
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    threads: int = field(kw_only=True)
    processes: int = 1


@dataclass(frozen=True, slots=True)
class MetricMeasured:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.MetricMeasured"
    name: str
    value: float
    unit: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    comparability_keys: list[str] | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactUsed:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.ArtifactUsed"
    uri: str
    checksum: str | None = None
    size_bytes: int | None = None
    role: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactProduced:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.ArtifactProduced"
    uri: str
    checksum: str | None = None
    size_bytes: int | None = None
    role: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class StepStarted:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.StepStarted"
    name: str
    step_attempt: int = 1
    parent_step: str | None = None


@dataclass(frozen=True, slots=True)
class StepFinished:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.StepFinished"
    name: str
    step_attempt: int = 1
    status: str = field(kw_only=True)
    exception_type: str | None = None
    exception_message: str | None = None
    caveats: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Annotation:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.Annotation"
    key: str
    value: str
    author: str | None = None
    target_type: str = "job"
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.Heartbeat"
    interval_ms: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.JobFinished"
    status: str
    exit_code: int | None = None
    signal: int | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class JobStatusChanged:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.JobStatusChanged"
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.AlertRaised"
    alert_id: str
    metric: str
    bucket: str
    last_good_job: str
    first_bad_job: str
    first_bad_event: str
    change_time: EpochMillis
    before: float
    size: float
    label: dict[str, str] = field(default_factory=dict)
    unit: str | None = None
    method: str = "changepoint"
    direction: str = "regression"
    relative_size: float | None = None
    confidence: float | None = None
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AlertTriaged:
    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.AlertTriaged"
    alert_id: str
    state: str
    note: str | None = None
    author: str | None = None


Payload = Union[  # noqa: UP007 - a runtime alias that get_args() can walk
    JobSubmitted,
    JobStarted,
    ProvenanceDeclared,
    ResourceSample,
    MetricMeasured,
    ArtifactUsed,
    ArtifactProduced,
    StepStarted,
    StepFinished,
    Annotation,
    Heartbeat,
    JobFinished,
    JobStatusChanged,
    AlertRaised,
    AlertTriaged,
]

PAYLOAD_TYPES: tuple[type[Any], ...] = typing.get_args(Payload)
PAYLOAD_BY_NAME: dict[str, type[Any]] = {cls.__name__: cls for cls in PAYLOAD_TYPES}
PAYLOAD_BY_AVRO_NAME: dict[str, type[Any]] = {cls.AVRO_NAME: cls for cls in PAYLOAD_TYPES}


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope. ``event_type`` always names the payload's record."""

    AVRO_NAME: ClassVar[str] = f"{NAMESPACE}.Event"
    event_id: str
    job_id: str
    event_type: str
    event_time: EpochMillis
    emitted_at: EpochMillis
    producer: Producer
    seq: int
    attempt: int = 1
    payload: Payload = field(kw_only=True)


# --- conversion to and from fastavro's dict form -------------------------------------------------------

_RECORD = 1
_RECORD_LIST = 2
_OPTIONAL_RECORD = 3
_PAYLOAD = 4
_MILLIS = 5


def _nested_kind(hint: Any) -> tuple[int, Any]:
    if hint is Payload:
        return _PAYLOAD, None
    if hint == EpochMillis:
        return _MILLIS, None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _RECORD, hint
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return _RECORD_LIST, args[0]
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return _OPTIONAL_RECORD, inner[0]
    return 0, None


@cache
def _plan(cls: Any) -> tuple[tuple[str, int, Any], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple((f.name, *_nested_kind(hints[f.name])) for f in dataclasses.fields(cls))


def to_avro(obj: Any) -> dict[str, Any]:
    """A model object as the dict fastavro writes; the payload union branch is named explicitly."""
    out: dict[str, Any] = {}
    for name, kind, _cls in _plan(obj.__class__):
        value = getattr(obj, name)
        if kind in (0, _MILLIS) or value is None:
            out[name] = value
        elif kind == _PAYLOAD:
            out[name] = (value.AVRO_NAME, to_avro(value))
        elif kind == _RECORD_LIST:
            out[name] = [to_avro(v) for v in value]
        else:
            out[name] = to_avro(value)
    return out


def from_avro(cls: Any, data: dict[str, Any], *, strict: bool = False) -> Any:
    """Build a model object from fastavro's dict form (read with ``return_record_name=True``, so records in
    unions may come as ``(name, record)``). ``strict`` rejects keys the model does not have, at any depth."""
    plan = _plan(cls)
    if strict:
        unknown = set(data) - {name for name, _, _ in plan}
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for name, kind, sub in plan:
        if name not in data:
            continue
        value = data[name]
        if kind in (_RECORD, _OPTIONAL_RECORD) and isinstance(value, tuple):
            value = value[1]
        if kind == 0 or value is None:
            kwargs[name] = value
        elif kind == _MILLIS:  # fastavro reads timestamp-millis as datetime
            kwargs[name] = timestamp_millis(value) if isinstance(value, datetime) else value
        elif kind == _PAYLOAD:
            branch, record = value
            kwargs[name] = from_avro(PAYLOAD_BY_AVRO_NAME[branch], record, strict=strict)
        elif kind == _RECORD_LIST:
            kwargs[name] = [from_avro(sub, v, strict=strict) for v in value]
        else:
            kwargs[name] = from_avro(sub, value, strict=strict)
    return cls(**kwargs)
