"""The fold of alert events: ``AlertRaised`` and ``AlertTriaged`` into one :class:`AlertState` per alert.

Alerts and their triage are events on the log like any other (DESIGN invariant 10), so replay rebuilds them and
their states. An alert's events travel under the key ``alert:<alert_id>`` (:func:`alert_key`): one partition holds
one alert's history, and the fold keeps its facts in that key's state, as it keeps a job's.

Pure, as the rest of the fold: no I/O, no clock. Any arrival order converges: the raise kept is the earliest by
``(event_time, event_id)``, the state is that of the latest triage by the same order, and the triage count counts
distinct events (a duplicate is refused before it gets here). A triage that comes before its raise is kept and
yields nothing until the raise arrives. An alert event under any other key is a fold error (the processor sends
it to dead letters with the reason), never folded into a job.
"""

from __future__ import annotations

from typing import cast

from jobprov.schemas.models import AlertRaised, AlertTriaged, Event
from jobprov.stream_processors.records import AlertState, Record
from jobprov.stream_processors.state import JobFoldState, OrderKey

KEY_PREFIX = "alert:"
UNTRIAGED = "untriaged"


def alert_key(alert_id: str) -> str:
    """The job id (the log's key) every event of ``alert_id`` travels under."""
    return f"{KEY_PREFIX}{alert_id}"


def _checked(state: JobFoldState, event: Event, alert_id: str) -> None:
    expected = alert_key(alert_id)
    if event.job_id != expected:
        raise ValueError(f"{event.event_type} of {alert_id!r} must travel under {expected!r}, not {event.job_id!r}")
    state.carried += 1  # an alert is no job: no job row for its key


def on_raised(state: JobFoldState, event: Event, time_ms: int, context: object) -> list[Record]:
    payload = cast(AlertRaised, event.payload)
    _checked(state, event, payload.alert_id)
    order: OrderKey = (time_ms, event.event_id)
    if state.alert is None or order < state.alert[0]:
        state.alert = (order, payload)
    return alert_records(state)


def on_triaged(state: JobFoldState, event: Event, time_ms: int, context: object) -> list[Record]:
    payload = cast(AlertTriaged, event.payload)
    _checked(state, event, payload.alert_id)
    order: OrderKey = (time_ms, event.event_id)
    state.triages += 1
    if state.triage is None or state.triage[0] < order:
        state.triage = (order, payload)
    return alert_records(state)


def alert_records(state: JobFoldState) -> list[Record]:
    """The alert's row as the state now makes it; none before its raise is known."""
    if state.alert is None:
        return []
    (raised_at, _), raised = state.alert
    triage = state.triage[1] if state.triage is not None else None
    return [
        AlertState(
            alert_id=raised.alert_id,
            metric=raised.metric,
            bucket=raised.bucket,
            label=raised.label,
            unit=raised.unit,
            method=raised.method,
            direction=raised.direction,
            last_good_job=raised.last_good_job,
            first_bad_job=raised.first_bad_job,
            first_bad_event=raised.first_bad_event,
            change_time_ms=raised.change_time,
            before=raised.before,
            size=raised.size,
            relative_size=raised.relative_size,
            confidence=raised.confidence,
            changes=list(raised.changes),
            raised_at_ms=raised_at,
            state=triage.state if triage is not None else UNTRIAGED,
            note=triage.note if triage is not None else None,
            author=triage.author if triage is not None else None,
            triaged_at_ms=state.triage[0][0] if state.triage is not None else None,
            triages=state.triages,
            state_version=state.version,
        )
    ]
