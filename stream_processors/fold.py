"""The fold: ``fold(state, event, context) -> (state, outputs)``. Pure and deterministic.

No I/O, no clock, no randomness, no globals: time comes from events, and "now" for lost-job detection is a
watermark the caller passes to :func:`snapshot`. The same code serves live streaming and replay.

- A duplicate event (same ``event_id``; for emitters' events, equivalently the same emitter instance and
  ``seq``) changes nothing and yields nothing.
- Any arrival order converges to the same state: facts are kept with order keys (see ``state``).
- ``fold`` updates ``state`` in place and returns it (the state is the caller's, one per job; copying it per
  event would cost more than the fold). Callers that need the old state copy it first.
- Outputs are the records that changed because of this event: metric points, resource points, lineage
  edges, annotations, step states, provenance (and a :class:`BucketMove` when late provenance changes a key the
  job's stored metric points are bucketed by: the state keeps no metric values, the sink moves them). The
  job's own state record comes from :func:`snapshot`, which callers take once per batch of events per job, so
  a batch of a job's events costs one JobState, not one per event. A state whose events only carried
  annotations on something else (an artifact, another job) is no job: callers take no snapshot of it
  (``JobFoldState.is_job``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from jobprov.schemas.models import (
    AlertRaised,
    AlertTriaged,
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    Event,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobStatusChanged,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
    StepStarted,
)
from jobprov.stream_processors.alert_fold import on_raised, on_triaged
from jobprov.stream_processors.comparability import ComparabilityRegistry, bucket_for, bucket_keys, fingerprint
from jobprov.stream_processors.lifecycle import derive_attempt_states, derive_job_state
from jobprov.stream_processors.provenance import flatten_declared, flatten_started, flatten_submitted
from jobprov.stream_processors.records import (
    AnnotationRecord,
    AttemptState,
    BucketMove,
    JobState,
    LineageEdge,
    MetricPoint,
    ProvenanceRecord,
    Record,
    ResourcePoint,
    StepState,
)
from jobprov.stream_processors.state import JobFoldState, OrderKey, SeqSet, StepFacts


@dataclass(frozen=True)
class FoldContext:
    registry: ComparabilityRegistry = field(default_factory=ComparabilityRegistry)
    lost_after_ms: int = 10 * 60 * 1000
    """Silence after which a running job without heartbeats is lost (with heartbeats: 3 intervals)."""


Handler = Callable[[JobFoldState, Event, int, FoldContext], list[Record]]


def fold(state: JobFoldState | None, event: Event, context: FoldContext) -> tuple[JobFoldState, list[Record]]:
    if state is None:
        state = JobFoldState(event.job_id)
    if not _first_time(state, event):
        return state, []
    state.version += 1
    time_ms = event.event_time
    if time_ms > state.last_event_ms:
        state.last_event_ms = time_ms
    if state.first_event_ms is None or time_ms < state.first_event_ms:
        state.first_event_ms = time_ms
    return state, _HANDLERS[type(event.payload)](state, event, time_ms, context)


def snapshot(state: JobFoldState, watermark_ms: int | None = None, context: FoldContext | None = None) -> JobState:
    """The job's current state record; ``watermark_ms`` (event time) lets a silent running job become lost."""
    return derive_job_state(state, watermark_ms, context.lost_after_ms if context else FoldContext.lost_after_ms)


def attempt_snapshots(state: JobFoldState, job: JobState) -> list[AttemptState]:
    """Each attempt's state record, taken with the job's (``job``: its :func:`snapshot`)."""
    return derive_attempt_states(state, job)


def _first_time(state: JobFoldState, event: Event) -> bool:
    """Whether the event is new to the job. An emitter instance numbers a job's events 1, 2, 3, ... with one
    event id per number, so ``(instance, seq)`` identifies an event as its id does and the fold remembers
    ranges of numbers instead of every id. Events without a usable number (seq < 1) are remembered by id."""
    if event.seq < 1:
        if event.event_id in state.unsequenced:
            return False
        state.unsequenced.add(event.event_id)
        return True
    seqs = state.seqs.get(event.producer.instance_id)
    if seqs is None:
        seqs = state.seqs[event.producer.instance_id] = SeqSet()
    return seqs.add(event.seq)


def _order(event: Event, time_ms: int) -> OrderKey:
    return (time_ms, event.event_id)


# --- provenance and metrics -------------------------------------------------------------------------------


def _merge_provenance(state: JobFoldState, values: dict[str, str], order: OrderKey, attempt: int) -> set[str]:
    """Merge an attempt's declared values; returns the keys whose value changed."""
    changed: set[str] = set()
    for key, value in values.items():
        by_attempt = state.provenance.setdefault(key, {})
        current = by_attempt.get(attempt)
        if current is None or current[0] < order:
            if current is None or current[1] != value:
                changed.add(key)
            by_attempt[attempt] = (order, value)
    if changed:
        state.provenance_version += 1
    return changed


def _metric_point(
    state: JobFoldState, event: Event, p: MetricMeasured, time_ms: int, context: FoldContext
) -> MetricPoint:
    keys = p.comparability_keys if p.comparability_keys is not None else context.registry.keys_for(p.name)
    memo = (
        state.provenance_version,
        event.attempt,
        tuple(keys) if isinstance(keys, list) else keys,
        tuple(sorted(p.tags.items())) if p.tags else (),
    )
    cached = state._buckets.get(memo)
    if cached is None:
        if len(state._buckets) > 256:
            state._buckets.clear()
        cached = state._buckets[memo] = bucket_for(keys, state.provenance_values(event.attempt), p.tags)
        state.metric_keys.update(cached[0])
    chosen, bucket = cached
    # Positional: one is made per metric event, and keywords cost a fifth more.
    return MetricPoint(state.job_id, event.event_id, p.name, p.value, p.unit, time_ms, event.attempt, p.step, p.tags,
                       bucket, chosen, context.registry.version, state.version)  # fmt: skip


def _provenance_outputs(state: JobFoldState, changed: set[str], context: FoldContext) -> list[Record]:
    """After a provenance change: the provenance record, and a move of the job's stored points when a key they
    are bucketed by changed."""
    values = state.provenance_values()
    out: list[Record] = [
        ProvenanceRecord(
            job_id=state.job_id,
            values=values,
            default_bucket=fingerprint(bucket_keys(context.registry.default_keys, values)),
            config_snapshot_uri=values.get("config.snapshot_uri"),
            state_version=state.version,
        )
    ]
    if not changed.isdisjoint(state.metric_keys):
        declaring = sorted({a for by_attempt in state.provenance.values() for a in by_attempt})
        provenance = {str(a): dict(state.provenance_values(a)) for a in declaring}
        out.append(BucketMove(state.job_id, provenance, state_version=state.version, points=state.metric_count))
    return out


def _on_metric(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    state.metric_count += 1
    return [_metric_point(state, event, cast(MetricMeasured, event.payload), time_ms, context)]


def _on_provenance(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: ProvenanceDeclared = cast(ProvenanceDeclared, event.payload)
    order = _order(event, time_ms)
    snapshot_uri = payload.config.snapshot_uri if payload.config is not None else None
    if snapshot_uri is not None and (state.config_snapshot is None or state.config_snapshot[0] < order):
        state.config_snapshot = (order, snapshot_uri)
    changed = _merge_provenance(state, flatten_declared(payload), order, event.attempt)
    return _provenance_outputs(state, changed, context) if changed else []


# --- lifecycle ---------------------------------------------------------------------------------------------


def _on_submitted(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: JobSubmitted = cast(JobSubmitted, event.payload)
    facts = state.attempt(event.attempt)
    order = _order(event, time_ms)
    if facts.submitted is None or order < facts.submitted[0]:
        facts.submitted = (order, payload)
    out: list[Record] = []
    if payload.parent_job_id:
        out.append(_edge(state, event, time_ms, f"job:{payload.parent_job_id}", f"job:{state.job_id}", "parent"))
    if payload.workflow_id:
        out.append(_edge(state, event, time_ms, f"workflow:{payload.workflow_id}", f"job:{state.job_id}", "member"))
    changed = _merge_provenance(state, flatten_submitted(payload), order, event.attempt)
    if changed:
        out += _provenance_outputs(state, changed, context)
    return out


def _on_started(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: JobStarted = cast(JobStarted, event.payload)
    facts = state.attempt(event.attempt)
    order = _order(event, time_ms)
    if facts.started is None or order < facts.started[0]:
        facts.started = (order, payload)
    changed = _merge_provenance(state, flatten_started(payload), order, event.attempt)
    return _provenance_outputs(state, changed, context) if changed else []


def _on_finished(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: JobFinished = cast(JobFinished, event.payload)
    state.attempt(event.attempt).finished[event.event_id] = (_order(event, time_ms), payload)
    return []


def _on_status_changed(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: JobStatusChanged = cast(JobStatusChanged, event.payload)
    state.attempt(event.attempt).waits[event.event_id] = (_order(event, time_ms), payload.status)
    return []


def _on_heartbeat(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: Heartbeat = cast(Heartbeat, event.payload)
    if state.heartbeat_interval_ms is None or payload.interval_ms > state.heartbeat_interval_ms:
        state.heartbeat_interval_ms = payload.interval_ms
    _activity(state, event.attempt, time_ms)
    return []


def _activity(state: JobFoldState, attempt: int, time_ms: int) -> None:
    facts = state.attempt(attempt)
    if facts.last_activity_ms is None or time_ms > facts.last_activity_ms:
        facts.last_activity_ms = time_ms


def _on_resources(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    p: ResourceSample = cast(ResourceSample, event.payload)
    facts = state.attempt(event.attempt)
    # Samples are cumulative per attempt: the largest value is the latest, whatever the arrival order.
    facts.cpu_user_s = max(facts.cpu_user_s or 0.0, p.cpu_user_s)
    facts.cpu_system_s = max(facts.cpu_system_s or 0.0, p.cpu_system_s)
    facts.peak_rss_bytes = max(facts.peak_rss_bytes or 0, p.peak_rss_bytes, p.rss_bytes)
    if p.io_read_bytes is not None:
        facts.io_read_bytes = max(facts.io_read_bytes or 0, p.io_read_bytes)
    if p.io_write_bytes is not None:
        facts.io_write_bytes = max(facts.io_write_bytes or 0, p.io_write_bytes)
    if p.processes > 0:  # the wrapper's final totals (processes == 0) come after the tree has exited
        _activity(state, event.attempt, time_ms)
    return [
        ResourcePoint(
            job_id=state.job_id,
            event_id=event.event_id,
            time_ms=time_ms,
            attempt=event.attempt,
            cpu_user_s=p.cpu_user_s,
            cpu_system_s=p.cpu_system_s,
            rss_bytes=p.rss_bytes,
            peak_rss_bytes=p.peak_rss_bytes,
            io_read_bytes=p.io_read_bytes,
            io_write_bytes=p.io_write_bytes,
            threads=p.threads,
            processes=p.processes,
            state_version=state.version,
        )
    ]


# --- steps, lineage, annotations ---------------------------------------------------------------------------


def _on_step(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    payload: StepStarted | StepFinished = cast("StepStarted | StepFinished", event.payload)
    key = (event.attempt, payload.name, payload.step_attempt)
    facts = state.steps.setdefault(key, StepFacts())
    order = _order(event, time_ms)
    if isinstance(payload, StepStarted):
        if facts.started is None or order < facts.started[0]:
            facts.started = (order, payload)
        _activity(state, event.attempt, time_ms)
    elif facts.finished is None or facts.finished[0] < order:
        facts.finished = (order, payload)
    started = facts.started[1] if facts.started else None
    finished = facts.finished[1] if facts.finished else None
    return [
        StepState(
            job_id=state.job_id,
            name=payload.name,
            step_attempt=payload.step_attempt,
            attempt=event.attempt,
            status=finished.status if finished else "running",
            parent_step=started.parent_step if started else None,
            started_at_ms=facts.started[0][0] if facts.started else None,
            finished_at_ms=facts.finished[0][0] if facts.finished else None,
            exception_type=finished.exception_type if finished else None,
            exception_message=finished.exception_message if finished else None,
            caveats=list(finished.caveats) if finished else [],
            state_version=state.version,
        )
    ]


def _edge(
    state: JobFoldState,
    event: Event,
    time_ms: int,
    src: str,
    dst: str,
    relation: str,
    payload: ArtifactUsed | ArtifactProduced | None = None,
) -> LineageEdge:
    return LineageEdge(
        src=src,
        dst=dst,
        relation=relation,
        job_id=state.job_id,
        event_id=event.event_id,
        time_ms=time_ms,
        role=payload.role if payload else None,
        checksum=payload.checksum if payload else None,
        size_bytes=payload.size_bytes if payload else None,
        step=payload.step if payload else None,
        state_version=state.version,
    )


def _on_used(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    p: ArtifactUsed = cast(ArtifactUsed, event.payload)
    return [_edge(state, event, time_ms, f"artifact:{p.uri}", f"job:{state.job_id}", "used", p)]


def _on_produced(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    p: ArtifactProduced = cast(ArtifactProduced, event.payload)
    return [_edge(state, event, time_ms, f"job:{state.job_id}", f"artifact:{p.uri}", "produced", p)]


def _on_annotation(state: JobFoldState, event: Event, time_ms: int, context: FoldContext) -> list[Record]:
    p: Annotation = cast(Annotation, event.payload)
    if p.target_type != "job" or (p.target is not None and p.target != state.job_id):
        state.carried += 1
    return [
        AnnotationRecord(
            job_id=state.job_id,
            event_id=event.event_id,
            target_type=p.target_type,
            target=p.target or state.job_id,
            key_name=p.key,
            value=p.value,
            author=p.author,
            time_ms=time_ms,
            state_version=state.version,
        )
    ]


_HANDLERS: dict[type[Any], Handler] = {
    JobSubmitted: _on_submitted,
    JobStarted: _on_started,
    ProvenanceDeclared: _on_provenance,
    ResourceSample: _on_resources,
    MetricMeasured: _on_metric,
    ArtifactUsed: _on_used,
    ArtifactProduced: _on_produced,
    StepStarted: _on_step,
    StepFinished: _on_step,
    Annotation: _on_annotation,
    Heartbeat: _on_heartbeat,
    JobFinished: _on_finished,
    JobStatusChanged: _on_status_changed,
    AlertRaised: on_raised,  # stream_processors/alert_fold.py
    AlertTriaged: on_triaged,
}
