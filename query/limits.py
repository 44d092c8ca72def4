"""Bounds on the work one API request may cause: a time budget, a number of requests computing at once, and the
engine's own limits on every query a budgeted request runs.

What is bounded, and how:

- Every query the :class:`~jobprov.query.store.Store` runs carries the engine setting ``max_execution_time`` (the
  store's ceiling, lowered to what is left of the request's budget) and ``max_result_rows``: the engine itself
  stops a query that runs too long or answers too much, wherever it was started from.
- A request computes in a worker thread under a :class:`Budget`. When the budget runs out or the client
  disconnects, the request is answered at once (503, or nothing for a client that left) and the budget is
  cancelled: the thread's next store query raises :class:`~jobprov.errors.QueryTimeout` instead of running, so
  a computation that queries the store as it goes (a regression scan asks for each flagged point's provenance)
  stops within one query.
- Python work between two queries is not interrupted (a thread cannot be stopped from outside): it is bounded
  by the parameter ranges the API accepts and by ``max_result_rows``. A request holds its :class:`Slots` slot
  until its thread has really ended, so abandoned work still counts against ``max_concurrent_queries`` and
  cannot starve the service: past the limit, requests are refused with 503 instead of queueing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from jobprov.errors import QueryError, QueryTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Bounds:
    """The range a numeric query parameter may take (both ends included): what keeps the Python work between two
    queries bounded. The CLI, the HTTP API and the query functions all take their ranges from here."""

    low: float
    high: float

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high  # False for NaN

    def words(self) -> str:
        return f"between {self.low:g} and {self.high:g}"

    def check(self, name: str, value: float) -> None:
        """Raise QueryError naming ``name`` unless ``value`` is within the bounds."""
        if not self.holds(value):
            raise QueryError(f"{name}: must be {self.words()}, got {value!r}")


ROWS = Bounds(1, 100_000)
"""Rows asked for: ``limit`` of a find or of job groups, ``last`` points of a baseline."""
DEPTH = Bounds(1, 50)
"""Levels a lineage walk may go."""
WINDOW = Bounds(2, 1000)
"""Points of a rolling baseline."""
DEVIATIONS = Bounds(1, 1000)
"""Robust deviations that make an outlier (``k``)."""
MIN_POINTS = Bounds(2, 10_000)
"""Points of a bucket before any is judged."""


@dataclass
class Budget:
    """How long a request may compute, and whether it was abandoned (client gone, or answered 503 already)."""

    seconds: float
    deadline: float = field(init=False)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        """Raise :class:`QueryTimeout` if the request was abandoned or its time is up."""
        if self.cancelled.is_set():
            raise QueryTimeout("the request was cancelled (the client left, or its time budget ran out)")
        if self.remaining() <= 0:
            raise QueryTimeout(f"the request ran past its time budget of {self.seconds:g} s (api.query_timeout_s)")


_current: ContextVar[Budget | None] = ContextVar("jobprov_query_budget", default=None)


def current_budget() -> Budget | None:
    """The budget of the request this thread computes for, if any."""
    return _current.get()


def under_budget(budget: Budget, fn: Callable[[], T]) -> T:
    """Run ``fn`` with ``budget`` as the current budget (in this thread/context)."""
    token = _current.set(budget)
    try:
        budget.check()
        return fn()
    finally:
        _current.reset(token)


class Slots:
    """At most ``limit`` requests compute at once; a slot is held until the computing thread ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        """Computations running now (including abandoned ones not yet ended)."""
        with self._lock:
            return self._busy

    def acquire(self) -> bool:
        with self._lock:
            if self._busy >= self.limit:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._busy -= 1

    def take(self) -> Ticket | None:
        """A slot for one request, or None when all are busy."""
        return Ticket(self) if self.acquire() else None


class Ticket:
    """One request's slot. Released once: when its computation ends, or when the request is abandoned before
    its computation started (a thread that starts after that does not compute)."""

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._state = "pending"

    def start(self) -> bool:
        """In the computing thread, first: False if the request was already abandoned."""
        with self._lock:
            if self._state != "pending":
                return False
            self._state = "running"
            return True

    def finish(self) -> None:
        with self._lock:
            self._state = "done"
        self._slots.release()

    def drop(self) -> None:
        """The request is over: release the slot now unless a thread computes (it releases it when it ends)."""
        with self._lock:
            if self._state != "pending":
                return
            self._state = "dropped"
        self._slots.release()
