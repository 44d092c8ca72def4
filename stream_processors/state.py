"""The fold's per-job state: facts gathered from events, kept so that any arrival order converges.

Nothing here depends on the order events arrive in: every fact is kept with an order key
``(event_time_ms, event_id)`` and "latest" or "earliest" is decided by that key, never by arrival.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobprov.schemas.models import JobFinished, JobStarted, JobSubmitted, MetricMeasured, StepFinished, StepStarted

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


@dataclass
class StoredMetric:
    event_id: str
    payload: MetricMeasured
    time_ms: int
    attempt: int
    bucket: str = ""  # the bucket last emitted for it


@dataclass
class JobFoldState:
    job_id: str
    seen: set[str] = field(default_factory=set)
    version: int = 0
    first_event_ms: int | None = None
    last_event_ms: int = 0
    heartbeat_interval_ms: int | None = None
    attempts: dict[int, AttemptFacts] = field(default_factory=dict)
    # key -> attempt -> (order, value): an attempt sees its own facts, else the latest earlier attempt's.
    provenance: dict[str, dict[int, tuple[OrderKey, str]]] = field(default_factory=dict)
    provenance_version: int = 0
    config_snapshot: tuple[OrderKey, str] | None = None
    metrics: dict[str, StoredMetric] = field(default_factory=dict)
    steps: dict[tuple[int, str, int], StepFacts] = field(default_factory=dict)
    producers: dict[str, list[int]] = field(default_factory=dict)  # emitter instance -> [min seq, max seq, count]
    # Memoised views, valid for one provenance_version (deterministic: derived from the state alone).
    _values: dict[int, tuple[int, dict[str, str]]] = field(default_factory=dict)
    _buckets: dict[tuple[object, ...], tuple[dict[str, str], str]] = field(default_factory=dict)

    def attempt(self, number: int) -> AttemptFacts:
        facts = self.attempts.get(number)
        if facts is None:
            facts = self.attempts[number] = AttemptFacts()
        return facts

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
