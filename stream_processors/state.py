"""The fold's per-job state: facts gathered from events, kept so that any arrival order converges.

Nothing here depends on the order events arrive in: every fact is kept with an order key
``(event_time_ms, event_id)`` and "latest" or "earliest" is decided by that key, never by arrival.

The state's size follows the job's structure (attempts, steps, provenance keys), not its event count: events
already folded are remembered as ``seq`` ranges per emitter instance (:class:`SeqSet`), and metric values are
not kept (a move of the job's points to another bucket is a record the sink applies, see ``BucketMove``).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from jobprov.schemas.models import (
    AlertRaised,
    AlertTriaged,
    JobFinished,
    JobStarted,
    JobSubmitted,
    StepFinished,
    StepStarted,
)

OrderKey = tuple[int, str]


@dataclass
class AttemptFacts:
    submitted: tuple[OrderKey, JobSubmitted] | None = None
    started: tuple[OrderKey, JobStarted] | None = None
    finished: dict[str, tuple[OrderKey, JobFinished]] = field(default_factory=dict)  # by event id
    waits: dict[str, tuple[OrderKey, str]] = field(default_factory=dict)  # queued/held/released, by event id
    last_activity_ms: int | None = None  # heartbeats, samples, steps: to flag activity after the end
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    peak_rss_bytes: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None

    def latest_finish(self) -> tuple[OrderKey, JobFinished] | None:
        return max(self.finished.values(), key=lambda item: item[0]) if self.finished else None


@dataclass
class StepFacts:
    started: tuple[OrderKey, StepStarted] | None = None
    finished: tuple[OrderKey, StepFinished] | None = None


class SeqSet:
    """The sequence numbers seen from one emitter instance, as sorted disjoint inclusive ranges.

    An emitter numbers a job's events 1, 2, 3, ... per instance, so a job's whole history is usually one range:
    memory is O(gaps), not O(events). ``add`` is O(1) for the next number in order and O(log ranges) otherwise.
    """

    __slots__ = ("count", "ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.count = 0

    def add(self, seq: int) -> bool:
        """Record ``seq``; False when it was recorded before (a duplicate)."""
        starts, ends = self.starts, self.ends
        if ends and seq == ends[-1] + 1:  # the common case: the next one in order
            ends[-1] = seq
            self.count += 1
            return True
        i = bisect_right(starts, seq) - 1  # the last range starting at or before seq
        if i >= 0 and seq <= ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == seq - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == seq + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = seq
        elif joins_right:
            starts[i + 1] = seq
        else:
            starts.insert(i + 1, seq)
            ends.insert(i + 1, seq)
        self.count += 1
        return True

    @property
    def low(self) -> int:
        return self.starts[0]

    @property
    def high(self) -> int:
        return self.ends[-1]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeqSet) and (self.starts, self.ends) == (other.starts, other.ends)

    def __repr__(self) -> str:
        return f"SeqSet({list(zip(self.starts, self.ends, strict=True))})"


@dataclass
class JobFoldState:
    job_id: str
    seqs: dict[str, SeqSet] = field(default_factory=dict)  # emitter instance -> seq numbers folded
    unsequenced: set[str] = field(default_factory=set)  # ids of events without a usable seq (seq < 1)
    version: int = 0
    """How many distinct events were folded: the records' ``state_version`` and the job's event count."""
    carried: int = 0
    """How many of those events only carried a fact about something else (an annotation on an artifact or on
    another job): a state made of nothing else is no job (see :meth:`is_job`)."""
    first_event_ms: int | None = None
    last_event_ms: int = 0
    heartbeat_interval_ms: int | None = None
    attempts: dict[int, AttemptFacts] = field(default_factory=dict)
    # key -> attempt -> (order, value): an attempt sees its own facts, else the latest earlier attempt's.
    provenance: dict[str, dict[int, tuple[OrderKey, str]]] = field(default_factory=dict)
    provenance_version: int = 0
    config_snapshot: tuple[OrderKey, str] | None = None
    metric_count: int = 0
    metric_keys: set[str] = field(default_factory=set)
    """Provenance keys some metric point of this job is bucketed by: only a change of one of them moves points."""
    steps: dict[tuple[int, str, int], StepFacts] = field(default_factory=dict)
    # An alert's key (``alert:<id>``) only. Plain defaults, not factories: a snapshot made before these fields
    # existed reads them from the class.
    alert: tuple[OrderKey, AlertRaised] | None = None
    """The alert's AlertRaised (the earliest by order, should it come twice under different ids)."""
    triage: tuple[OrderKey, AlertTriaged] | None = None
    """The latest triage by order: the alert's state."""
    triages: int = 0
    # Memoised views, valid for one provenance_version (deterministic: derived from the state alone).
    _values: dict[int, tuple[int, dict[str, str]]] = field(default_factory=dict)
    _buckets: dict[tuple[object, ...], tuple[dict[str, str], str]] = field(default_factory=dict)

    def attempt(self, number: int) -> AttemptFacts:
        facts = self.attempts.get(number)
        if facts is None:
            facts = self.attempts[number] = AttemptFacts()
        return facts

    def is_job(self) -> bool:
        """Whether some event concerns this job itself. An annotation on an artifact travels under some job id
        (the log is keyed by job); when no other event has that id it is not a job and gets no job row."""
        return self.version > self.carried

    def latest_attempt(self) -> int:
        return max(self.attempts, default=1)

    def provenance_values(self, attempt: int | None = None) -> dict[str, str]:
        """Provenance as seen by ``attempt`` (default: the latest): per key, the value declared by that
        attempt, else by the latest earlier one. Callers must not modify the result."""
        attempt = self.latest_attempt() if attempt is None else attempt
        cached = self._values.get(attempt)
        if cached is not None and cached[0] == self.provenance_version:
            return cached[1]
        values: dict[str, str] = {}
        for key in sorted(self.provenance):
            by_attempt = self.provenance[key]
            eligible = [a for a in by_attempt if a <= attempt]
            if eligible:
                values[key] = by_attempt[max(eligible)][1]
        self._values[attempt] = (self.provenance_version, values)
        return values
