"""The cyclic collector around a batch: held while it folds; on release one young pass; on retire (a batch handed
off, its records still to be written) no pass over them, with a full pass every FULL_PASS_EVERY retires."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from jobprov.stream_processors.processor import FULL_PASS_EVERY, CollectorPause


class _Node:
    other: object = None


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    gc.collect()
    yield
    if not was:
        gc.disable()


def _cycle() -> weakref.ref[_Node]:
    node = _Node()
    node.other = node
    return weakref.ref(node)


def test_hold_stops_the_collector_and_release_collects_the_batchs_cycles() -> None:
    pause = CollectorPause()
    pause.hold()
    assert not gc.isenabled()
    made = _cycle()
    pause.release()
    assert gc.isenabled()
    assert made() is None


def test_retire_leaves_a_batch_unscanned_until_the_full_pass() -> None:
    pause = CollectorPause()
    pause.hold()
    kept = _Node()
    made = _cycle()
    pause.retire()
    assert gc.isenabled()
    assert gc.get_count()[0] < 100  # the batch's objects left the young generation unscanned
    assert made() is not None and kept.other is None  # the cycle waits; what is alive stays alive
    for _ in range(FULL_PASS_EVERY - 2):
        pause.hold()
        pause.retire()
    assert made() is not None
    pause.hold()
    pause.retire()  # the FULL_PASS_EVERY-th: a full pass
    assert made() is None


def test_retire_and_release_without_a_hold_change_nothing() -> None:
    pause = CollectorPause()
    gc.disable()
    try:
        pause.hold()  # the collector was off already: this pause does not own it
        pause.retire()
        pause.release()
        assert not gc.isenabled()
    finally:
        gc.enable()
