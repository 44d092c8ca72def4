"""Alerts: the detector's findings as events people triage, and the list of them by state.

- :func:`scan` runs the detector of ``query regressions`` (:func:`~jobprov.query.series.line_regressions`, the one
  implementation of the rule) on the buckets that received points since a time, and returns an ``AlertRaised``
  for each regression no alert holds yet. :func:`raise_alerts` sends them through the emitter's transport.
- :func:`triage` sends an ``AlertTriaged``: a person's verdict (acknowledged, invalid, fixed, wontfix,
  improvement) with a note.
- :func:`list_alerts` reads the ``alerts`` table the fold writes (``stream_processors/alert_fold.py``).

Stable ids: an alert's id is a hash of its metric, bucket and first bad job (:func:`alert_id`), and its raise
event's id derives from the alert id (``emitters/importers/send.py``), so detecting the same change again, in
another scan or another process, raises nothing new. A change the detector places a point or two away from an
alert it already raised in the same bucket (its change point moved as the series grew) is that alert, not a new
one. Scanning never blocks the worker: it reads the store and sends events, as any emitter does.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobprov.emitters.base import DeliveryReport
from jobprov.emitters.importers.send import Record, send
from jobprov.errors import QueryError
from jobprov.query.changepoints import MIN_SIZE
from jobprov.query.lines import iso_millis
from jobprov.query.names import close_matches, unknown
from jobprov.query.series import Regression, line_regressions, series
from jobprov.query.store import Store, to_utc
from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import TRIAGE_STATES, AlertRaised, AlertTriaged
from jobprov.settings import EmitterSettings
from jobprov.stream_processors.alert_fold import UNTRIAGED, alert_key
from jobprov.stream_processors.comparability import ComparabilityRegistry

SENDER = "alerts"  # the events' producer (jobprov-import-alerts) and the namespace of their ids
STATES = (UNTRIAGED, *TRIAGE_STATES)
VERBS = {
    "ack": "acknowledged",
    "invalid": "invalid",
    "fixed": "fixed",
    "wontfix": "wontfix",
    "improvement": "improvement",
}
"""The CLI's verbs (`jobprov alert ack ...`) and the states they set."""

_COLUMNS = (
    "alert_id, metric, bucket, label, unit, method, direction, last_good_job, first_bad_job, first_bad_event, "
    "toUnixTimestamp64Milli(change_time), before, size, relative_size, confidence, changes, "
    "toUnixTimestamp64Milli(raised_at), state, note, author, toUnixTimestamp64Milli(triaged_at), triages"
)
_NAMES = [c.strip().removeprefix("toUnixTimestamp64Milli(").rstrip(")") for c in _COLUMNS.split(",")]
_TIMES = {"change_time", "raised_at", "triaged_at"}


def alert_id(metric: str, bucket: str, first_bad_job: str) -> str:
    """The alert of a change: the same metric, bucket and first bad job always make the same id."""
    return hashlib.sha256(f"{metric}\x1f{bucket}\x1f{first_bad_job}".encode()).hexdigest()[:16]


def state_of(name: str) -> str:
    """A triage state from its name or the CLI's verb (``ack``); QueryError naming the known ones otherwise."""
    state = VERBS.get(name, name)
    if state not in TRIAGE_STATES:
        near = close_matches(name, [*VERBS, *TRIAGE_STATES])
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        raise QueryError(f"state {name!r}: {hint}one of {', '.join(TRIAGE_STATES)} (or {', '.join(VERBS)})")
    return state


def list_alerts(
    store: Store,
    *,
    state: str | None = None,
    metric: str | None = None,
    alert: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Alerts, newest change first, as documents (times ISO 8601): all, or those in ``state`` (``untriaged`` or a
    triage state), of ``metric``, or the one ``alert`` (UnknownNameError, with close ids, when there is none)."""
    where: list[str] = ["1"]
    params: dict[str, Any] = {"limit": limit}
    if state is not None:
        if state not in STATES:  # a bad parameter (400), not a name the store lacks
            raise QueryError(str(unknown("alert state", state, STATES)))
        where.append("state = {state:String}")
        params["state"] = state
    if metric is not None:
        where.append("metric = {metric:String}")
        params["metric"] = metric
    if alert is not None:
        where.append("alert_id = {alert:String}")
        params["alert"] = alert
    rows = store.rows(
        f"SELECT {_COLUMNS} FROM {{db}}.alerts FINAL WHERE {' AND '.join(where)} "
        "ORDER BY change_time DESC, alert_id LIMIT {limit:UInt32}",
        **params,
    )
    if alert is not None and not rows:
        known = [r[0] for r in store.rows("SELECT alert_id FROM {db}.alerts FINAL LIMIT 10000")]
        raise unknown("alert", alert, known, " (`jobprov query alerts` lists them)")
    return [_document(row) for row in rows]


def _document(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(_NAMES, row, strict=True))
    for name in _TIMES:
        out[name] = iso_millis(out[name]) if out[name] is not None else None
    out["label"] = dict(out["label"])
    out["changes"] = list(out["changes"])
    return out


def changed_buckets(store: Store, since: datetime | None = None) -> list[tuple[str, str]]:
    """(metric, bucket) of every bucket holding points; with ``since``, only those with a point of a job whose
    events the store took at or after it (new points, and points late provenance moved)."""
    if since is None:
        rows = store.rows("SELECT DISTINCT metric, bucket FROM {db}.metric_points FINAL ORDER BY metric, bucket")
    else:
        rows = store.rows(
            "SELECT DISTINCT metric, bucket FROM {db}.metric_points FINAL WHERE job_id IN "
            "(SELECT job_id FROM {db}.events WHERE ingested_at >= {since:DateTime64(3, 'UTC')} "
            "AND NOT startsWith(job_id, 'alert:')) ORDER BY metric, bucket",
            since=since,
        )
    return [(str(r[0]), str(r[1])) for r in rows]


@dataclass
class ScanReport:
    buckets: int  # buckets scanned
    raised: list[AlertRaised]  # alerts new to the store
    seconds: float


def scan(
    store: Store,
    registry: ComparabilityRegistry | None = None,
    *,
    since: datetime | None = None,
) -> ScanReport:
    """The regressions of the buckets that changed ``since`` (all buckets without it) that no alert holds yet, as
    ``AlertRaised`` payloads; nothing is sent (see :func:`raise_alerts`)."""
    started = time.perf_counter()
    registry = registry or ComparabilityRegistry()
    buckets = changed_buckets(store, since)
    known: dict[tuple[str, str], list[str]] = {}  # (metric, bucket) -> first bad jobs of its alerts
    for metric, bucket, job in store.rows(
        "SELECT metric, bucket, first_bad_job FROM {db}.alerts FINAL WHERE metric IN {metrics:Array(String)}",
        metrics=sorted({m for m, _ in buckets}),
    ):
        known.setdefault((metric, bucket), []).append(job)
    raised: list[AlertRaised] = []
    for metric, bucket in buckets:
        policy = registry.policy_for(metric)
        for line in series(store, metric, bucket=bucket):
            position = {job: i for i, job in enumerate(line.job_ids)}
            held = [position[j] for j in known.get((metric, bucket), ()) if j in position]
            for r in line_regressions(store, metric, line, policy):
                at = position[r.first_bad_job]
                if not r.onset or r.direction != "regression" or any(abs(at - i) < MIN_SIZE for i in held):
                    continue
                raised.append(_raised(r, line.unit))
                held.append(at)
    return ScanReport(len(buckets), raised, time.perf_counter() - started)


def _raised(r: Regression, unit: str | None) -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id(r.metric, r.bucket, r.first_bad_job),
        metric=r.metric,
        bucket=r.bucket,
        last_good_job=r.last_good_job,
        first_bad_job=r.first_bad_job,
        first_bad_event=r.point.event_id,
        change_time=timestamp_millis(r.point.time),
        before=r.median,
        size=r.size,
        label=dict(r.label),
        unit=unit,
        method=r.method,
        direction=r.direction,
        relative_size=r.relative_size,
        confidence=r.confidence,
        changes=[str(c) for c in r.changes],
    )


def raised_document(alert: AlertRaised, raised_at: datetime) -> dict[str, Any]:
    """A new alert as :func:`list_alerts` will show it once folded (untriaged): what notifications carry."""
    out: dict[str, Any] = {name: getattr(alert, name, None) for name in _NAMES}
    out.update(change_time=iso_millis(alert.change_time), raised_at=raised_at.isoformat(), state=UNTRIAGED)
    out.update(label=dict(alert.label), changes=list(alert.changes), triages=0)
    return out


def raise_alerts(
    alerts: Sequence[AlertRaised], settings: EmitterSettings, now: datetime | None = None
) -> DeliveryReport:
    """Send an ``AlertRaised`` per alert, under its key, with an event id derived from its id (sending one again
    changes nothing)."""
    records = raised_records(alerts, now or datetime.now(UTC))
    return send(records, settings, SENDER, "alert scan") if records else DeliveryReport()


def raised_records(alerts: Sequence[AlertRaised], when: datetime) -> list[Record]:
    """The events :func:`raise_alerts` sends (``emitters.importers.send.to_events`` makes the envelopes)."""
    return [Record(alert_key(a.alert_id), a, when, "raised") for a in alerts]


def triage_record(alert: str, state: str, when: datetime, note: str | None = None, author: str | None = None) -> Record:
    """The event :func:`triage` sends: one per verdict (its id derives from the alert, the time, state and author)."""
    payload = AlertTriaged(alert_id=alert, state=state_of(state), note=note or None, author=author or None)
    return Record(alert_key(alert), payload, when, f"triaged:{timestamp_millis(when)}:{payload.state}:{author or ''}")


def triage(
    alert: str,
    state: str,
    settings: EmitterSettings,
    *,
    note: str | None = None,
    author: str | None = None,
    now: datetime | None = None,
) -> AlertTriaged:
    """Send a person's verdict on ``alert`` (``state``: a triage state or the CLI's verb); returns the payload sent.
    The caller checks that the alert exists (:func:`list_alerts` with ``alert``)."""
    record = triage_record(alert, state, to_utc(now) or datetime.now(UTC), note, author)
    report = send([record], settings, SENDER, "alert triage")
    if report.lost:
        raise QueryError(f"the triage was not recorded: {'; '.join(report.errors[:3])}")
    payload: AlertTriaged = record.payload
    return payload
