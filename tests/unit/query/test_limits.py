"""A request's slot is released exactly once, whether its computation ran, ended, or never started."""

from __future__ import annotations

import pytest

from jobprov.errors import QueryTimeout
from jobprov.query.limits import Budget, Slots, under_budget


def test_slots_are_limited_and_a_computed_request_releases_its_own() -> None:
    slots = Slots(2)
    first, second = slots.take(), slots.take()
    assert first is not None and second is not None
    assert slots.take() is None and slots.busy == 2
    assert first.start()
    first.drop()  # the request was answered (503) while its thread computes: the slot stays taken
    assert slots.busy == 2
    first.finish()  # the thread ended
    assert slots.busy == 1


def test_a_request_abandoned_before_its_thread_started_releases_its_slot_once() -> None:
    slots = Slots(1)
    ticket = slots.take()
    assert ticket is not None
    ticket.drop()
    assert slots.busy == 0
    assert not ticket.start()  # a thread that starts late does not compute
    ticket.drop()
    assert slots.busy == 0


def test_an_expired_or_cancelled_budget_runs_nothing() -> None:
    ran: list[int] = []
    with pytest.raises(QueryTimeout, match="time budget"):
        under_budget(Budget(0.0), lambda: ran.append(1))
    cancelled = Budget(60.0)
    cancelled.cancel()
    with pytest.raises(QueryTimeout, match="cancelled"):
        under_budget(cancelled, lambda: ran.append(1))
    assert ran == []
    assert under_budget(Budget(60.0), lambda: 7) == 7
