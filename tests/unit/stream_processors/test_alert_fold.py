"""The fold of alert events: pure, order-independent, duplicate-proof, and never a job."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import AlertRaised, AlertTriaged, Event, Producer
from jobprov.stream_processors import snapshots
from jobprov.stream_processors.alert_fold import UNTRIAGED, alert_key
from jobprov.stream_processors.records import AlertState, Record, content_of, materialize
from jobprov.stream_processors.state import JobFoldState

T0 = timestamp_millis(datetime(2026, 3, 1, 12, tzinfo=UTC))
PRODUCER = Producer(name="jobprov-import-alerts", version="0", instance_id="fixed")
ALERT = "0123456789abcdef"


def raised(alert_id: str = ALERT) -> AlertRaised:
    return AlertRaised(
        alert_id=alert_id,
        metric="AM1",
        bucket="b1",
        last_good_job="nightly-11",
        first_bad_job="nightly-12",
        first_bad_event="e-12",
        change_time=T0,
        before=10.0,
        size=1.5,
        label={"dataset": "hsc"},
        unit="mas",
        relative_size=0.15,
        confidence=0.999,
        changes=["software.numpy: 1.26.4 → 2.0.1"],
    )


def event(payload: AlertRaised | AlertTriaged, event_id: str, minutes: int, job_id: str | None = None) -> Event:
    when = T0 + minutes * 60_000
    return Event(
        event_id=event_id,
        job_id=job_id or alert_key(payload.alert_id),
        event_type=type(payload).__name__,
        event_time=when,
        emitted_at=when,
        producer=PRODUCER,
        seq=0,  # as the alert scan and triage send them: deduplicated by event id
        payload=payload,
    )


Fold = Callable[..., tuple[JobFoldState, list[Record]]]  # the conftest's fold_events: (events, state=) -> ...


def the_alert(records: list[Record]) -> AlertState:
    kept = [r for r in materialize(records).values() if isinstance(r, AlertState)]
    assert len(kept) == 1
    return kept[0]


HISTORY = [
    event(raised(), "r", 0),
    event(AlertTriaged(ALERT, "acknowledged", note="looking", author="ann"), "t1", 5),
    event(AlertTriaged(ALERT, "fixed", note="numpy pinned", author="bob"), "t2", 9),
]


def test_raise_then_triage_gives_the_latest_state(fold_events: Fold) -> None:
    state, records = fold_events(HISTORY[:1])
    first = the_alert(records)
    assert (first.state, first.triages, first.note, first.triaged_at_ms) == (UNTRIAGED, 0, None, None)
    assert first.change_time_ms == T0 == first.raised_at_ms
    state, records = fold_events(HISTORY[1:], state=state)
    alert = the_alert(records)
    assert (alert.state, alert.note, alert.author, alert.triages) == ("fixed", "numpy pinned", "bob", 2)
    assert alert.triaged_at_ms == T0 + 9 * 60_000
    assert alert.changes == ["software.numpy: 1.26.4 → 2.0.1"]
    assert not state.is_job(), "an alert's key makes no job row"


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_any_arrival_order_converges(order: tuple[int, ...], fold_events: Fold) -> None:
    _, expected = fold_events(HISTORY)
    _, records = fold_events([HISTORY[i] for i in order])
    assert content_of(the_alert(records)) == content_of(the_alert(expected))


def test_a_triage_before_its_raise_waits_for_it(fold_events: Fold) -> None:
    state, records = fold_events([HISTORY[2]])
    assert records == []
    _, records = fold_events([HISTORY[0]], state=state)
    assert the_alert(records).state == "fixed"


def test_redelivered_events_change_nothing(fold_events: Fold) -> None:
    state, _ = fold_events(HISTORY)
    version = state.version
    state, records = fold_events(HISTORY, state=state)
    assert records == [] and state.version == version
    # Raised again by a second scan: same id (derived from the alert), another time; still nothing.
    _, records = fold_events([event(raised(), "r", 60)], state=state)
    assert records == []


def test_a_snapshot_brings_an_alert_back_as_it_was(fold_events: Fold) -> None:
    state, _ = fold_events(HISTORY[:2])
    back = snapshots.load(snapshots.dump(state))
    _, records = fold_events(HISTORY[2:], state=back)
    _, expected = fold_events(HISTORY)
    assert the_alert(records) == the_alert(expected)


def test_an_alert_event_under_another_key_is_refused(fold_events: Fold) -> None:
    with pytest.raises(ValueError, match="must travel under 'alert:0123456789abcdef'"):
        fold_events([event(raised(), "r", 0, job_id="nightly-12")])
