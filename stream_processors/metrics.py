"""Prometheus metrics of the stream processor.

Names carry units and ``_total`` for counters; labels are bounded (event type, reason, status, partition):
never a job id. ``ProcessorMetrics(None)`` records nothing (tests, replay).

The counters' known label values (every event type of the schema, every dead-letter reason) exist at 0 from the
start: a series that first appears at 1 is invisible to ``rate``/``increase``, so the first dead letter of a
kind would never alert, and "no events" could not be told from "no series yet".
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from jobprov.schemas.models import PAYLOAD_BY_NAME

EVENT_TYPES_UNKNOWN = "unknown"
# The reasons the processor dead-letters with (stream_processors/processor.py and dead_letters.py).
DEAD_LETTER_REASONS = ("undecodable", "unknown_schema", "fold_error")


def scrape_sum(port: int, prefix: str, host: str = "127.0.0.1") -> float:
    """The sum of every sample whose line starts with ``prefix`` on a worker's /metrics; 0 if unreachable."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def _event_type_label(event_type: str) -> str:
    """The envelope's ``event_type`` is the producer's text: only the schema's payload names become label values,
    so a faulty emitter cannot grow the label's cardinality."""
    return event_type if event_type in PAYLOAD_BY_NAME else EVENT_TYPES_UNKNOWN


class ProcessorMetrics:
    def __init__(self, registry: Any | None) -> None:
        self.enabled = registry is not None
        if not self.enabled:
            return
        from prometheus_client import Counter, Gauge, Histogram

        self._consumed = Counter(
            "jobprov_events_consumed_total", "Events decoded from the log", ["event_type"], registry=registry
        )
        self._folded = Counter("jobprov_events_folded_total", "Events folded", ["event_type"], registry=registry)
        self._dead = Counter(
            "jobprov_dead_letters_total", "Messages sent to dead letters", ["reason"], registry=registry
        )
        self._fold = Histogram(
            "jobprov_fold_batch_seconds",
            "Time to decode and fold one batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self._per_event = Histogram(
            "jobprov_fold_event_seconds",
            "Decode and fold time per event, averaged over its batch",
            buckets=(1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2),
            registry=registry,
        )
        self._backpressure = Counter("jobprov_sink_backpressure_total", "Times the sink pushed back", registry=registry)
        self._jobs = Gauge("jobprov_jobs", "Jobs in this worker's memory, by status", ["status"], registry=registry)
        self._lag = Gauge(
            "jobprov_consumer_lag_events",
            "Messages behind the partition's high watermark (only as right as the broker's watermark)",
            ["partition"],
            registry=registry,
        )
        self._in_memory = Gauge(
            "jobprov_worker_jobs_in_memory", "Jobs whose fold state this worker holds", registry=registry
        )
        self._evicted = Counter(
            "jobprov_worker_jobs_evicted_total", "Jobs that left memory once the watermark passed", registry=registry
        )
        self._loads = Counter(
            "jobprov_worker_state_loads_total", "Jobs brought back into memory from the store", registry=registry
        )
        self._load_seconds = Histogram(
            "jobprov_worker_state_load_seconds",
            "Time to bring a batch's missing jobs back from the store",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self._resume_seconds = Gauge(
            "jobprov_worker_resume_seconds",
            "Time the last partition assignment took to load its jobs from the store",
            registry=registry,
        )
        self._resumed_jobs = Gauge(
            "jobprov_worker_resumed_jobs", "Jobs the last partition assignment loaded from the store", registry=registry
        )
        self._statuses: set[str] = set()
        for event_type in PAYLOAD_BY_NAME:
            self._consumed.labels(event_type)
            self._folded.labels(event_type)
        for reason in DEAD_LETTER_REASONS:
            self._dead.labels(reason)

    def counted(self, consumed: Mapping[str, int], folded: Mapping[str, int]) -> None:
        """Per-batch tallies by event type (one update per type per batch, not per event)."""
        if not self.enabled:
            return
        for event_type, n in consumed.items():
            self._consumed.labels(_event_type_label(event_type)).inc(n)
        for event_type, n in folded.items():
            self._folded.labels(_event_type_label(event_type)).inc(n)

    def dead_lettered(self, reason: str) -> None:
        if self.enabled:
            self._dead.labels(reason).inc()

    def fold_seconds(self, seconds: float, events: int) -> None:
        if self.enabled:
            self._fold.observe(seconds)
            if events:
                self._per_event.observe(seconds / events)

    def lag(self, partition: int, events: int) -> None:
        if self.enabled:
            self._lag.labels(str(partition)).set(max(0, events))

    def forget_partitions(self, partitions: set[int]) -> None:
        """Drop the lag of partitions this worker no longer owns (a stale value would look like lag)."""
        if not self.enabled:
            return
        for partition in partitions:
            with contextlib.suppress(KeyError):  # never reported here
                self._lag.remove(str(partition))

    def backpressure(self) -> None:
        if self.enabled:
            self._backpressure.inc()

    def memory(self, jobs: int, evicted: int) -> None:
        if self.enabled:
            self._in_memory.set(jobs)
            if evicted:
                self._evicted.inc(evicted)

    def state_loaded(self, jobs: int, seconds: float) -> None:
        if self.enabled:
            self._loads.inc(jobs)
            self._load_seconds.observe(seconds)

    def resumed(self, jobs: int, seconds: float) -> None:
        if self.enabled:
            self._resume_seconds.set(seconds)
            self._resumed_jobs.set(jobs)

    def jobs(self, status_of: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        counts = Tally(status_of.values())
        for status in self._statuses | set(counts):
            self._jobs.labels(status).set(counts.get(status, 0))
        self._statuses |= set(counts)
