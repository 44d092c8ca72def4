"""The replay's read-ahead: items in order, the reader's error raised to the consumer, a closed consumer stops it;
and its writes where there is no second connection to write beside on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from jobprov.errors import SinkError
from jobprov.stream_processors.replay import _ahead, _now


def test_items_arrive_in_order() -> None:
    assert list(_ahead(iter(range(100)), depth=2)) == list(range(100))


def test_the_readers_error_reaches_the_consumer_after_what_came_before() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("the store went away")

    ahead = _ahead(failing())
    assert [next(ahead), next(ahead)] == [1, 2]
    with pytest.raises(RuntimeError, match="the store went away"):
        next(ahead)


def test_closing_early_stops_the_reader() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    ahead = _ahead(endless(), depth=2)
    assert next(ahead) == 0
    ahead.close()
    deadline = time.monotonic() + 5
    while any(t.name == "jobprov-replay-read" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the reader thread outlived its consumer"
        time.sleep(0.01)
    assert len(produced) <= 5  # at most the queue's depth ahead of what was taken


def test_a_write_without_a_second_connection_runs_at_once_and_keeps_its_error_for_the_settle() -> None:
    calls: list[str] = []

    def waiting(write: Callable[[], None]) -> None:
        calls.append("waiting")
        write()

    done = _now(waiting, lambda: calls.append("write"))
    assert calls == ["waiting", "write"] and done.done() and done.result() is None

    def broken() -> None:
        raise SinkError("the store refused it")

    failed = _now(waiting, broken)
    assert failed.done()
    with pytest.raises(SinkError, match="refused"):
        failed.result()
