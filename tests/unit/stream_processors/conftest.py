"""Shared helpers for the fold tests: a realistic job history, a builder for hand-made ones, and fold drivers.

Everything is exposed as session-scoped fixtures (usable with ``@given``), so no test imports this module.
Nothing here does I/O: event ids and times are derived from the job id and a logical clock.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import strategies as st

from jobprov.schemas.models import (
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    ConfigRef,
    Dataset,
    Event,
    GitInfo,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
    StepStarted,
)
from jobprov.stream_processors.comparability import ComparabilityRegistry
from jobprov.stream_processors.fold import FoldContext, fold
from jobprov.stream_processors.records import Record, content_of, materialize
from jobprov.stream_processors.state import JobFoldState

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T0_MS = 1772366400000  # T0 in epoch milliseconds
HEARTBEAT_MS = 30_000

# A registry where one metric's bucket depends on a key that a later declaration overrides (software.numpy),
# so arrival order really moves buckets around.
REGISTRY = ComparabilityRegistry(
    metrics={"loss": ("dataset", "config.hash", "software.numpy"), "throughput": ("dataset", "host")},
    label="test",
)
CONTEXT = FoldContext(registry=REGISTRY)


def event_id(job_id: str, n: int) -> str:
    """A UUID-looking id whose order has nothing to do with the order of emission."""
    return str(uuid.UUID(bytes=hashlib.blake2b(f"{job_id}/{n}".encode(), digest_size=16).digest()))


class History:
    """One job's events as emitters would send them: seq increases per producer instance, time never goes back."""

    def __init__(self, job_id: str = "job-1", *, start_ms: int = 0) -> None:
        self.job_id = job_id
        self.clock_ms = start_ms  # milliseconds after T0
        self.events: list[Event] = []
        self._seq: dict[str, int] = {}

    def add(
        self,
        payload: Any,
        *,
        attempt: int = 1,
        after_ms: int = 1000,
        at_ms: int | None = None,
        instance: str | None = None,
        seq: int | None = None,
        producer: str = "jobprov-python",
    ) -> Event:
        if at_ms is None:
            self.clock_ms += after_ms
            at_ms = self.clock_ms
        else:
            self.clock_ms = max(self.clock_ms, at_ms)
        instance = instance or f"{self.job_id}/attempt-{attempt}"
        if seq is None:
            seq = self._seq.get(instance, 0) + 1
        self._seq[instance] = max(self._seq.get(instance, 0), seq)
        when = T0_MS + at_ms
        event = Event(
            event_id(self.job_id, len(self.events)),
            self.job_id,
            type(payload).__name__,
            when,
            when + 2,
            Producer(producer, "0.1.0", instance),
            seq,
            attempt,
            payload=payload,
        )
        self.events.append(event)
        return event

    def skip_seq(self, instance: str, count: int = 1) -> None:
        """Lose the next ``count`` events of a producer instance (their seq numbers are never used)."""
        self._seq[instance] = self._seq.get(instance, 0) + count

    @staticmethod
    def ms(event: Event) -> int:
        """The event's time in epoch milliseconds (the fold's time_ms)."""
        return event.event_time


def _run_attempt(
    h: History,
    attempt: int,
    *,
    band: str,
    dataset: str,
    n_metrics: int,
    late_provenance: bool,
    gap_ms: int,
    parent_job_id: str | None,
    workflow_id: str | None,
    echo_start: bool,
) -> None:
    host = f"nid00{attempt}"
    heartbeat_ms = HEARTBEAT_MS // attempt  # the retry ran with other settings
    h.add(
        JobSubmitted(
            name="reduce_coadd",
            kind="hpc",
            parent_job_id=parent_job_id,
            workflow_id=workflow_id,
            dag_node="coadd",
            submitter="alice",
            scheduler_ids={"slurm_job_id": "4242", "slurm_restart_count": str(attempt - 1)},
            machine="perlmutter",
            requested_nodes=2,
        ),
        attempt=attempt,
        after_ms=gap_ms,
    )
    h.add(
        JobStarted(
            host,
            "Linux",
            "6.1.0",
            "3.12.2",
            cwd="/scratch/alice",
            command_line=["python", "coadd.py", "--band", band],
            pid=1000 + attempt,
        ),
        attempt=attempt,
        after_ms=gap_ms,
    )
    if echo_start:  # the scheduler's prolog reports the start too, a little later and from the batch host
        h.add(
            JobStarted("batch01", "Linux", "6.1.0", cwd="/scratch/alice"),
            attempt=attempt,
            after_ms=gap_ms,
            instance=f"prolog/{attempt}",
            producer="jobprov-prolog",
        )
    declared = ProvenanceDeclared(
        values={"band": band, "survey": "lsst"},
        datasets=[Dataset(dataset, "v3", "sha256:0f0f")],
        config=ConfigRef("cfg-9a1b", f"s3://configs/{dataset}/cfg-9a1b.yaml"),
        software={"numpy": "1.26.4", "astropy": "6.0.1"},
        git=GitInfo("3e1f00d", "main", False, "git@example.org:pipe.git"),
        environment={"OMP_NUM_THREADS": "8"},
    )
    if not late_provenance:
        h.add(declared, attempt=attempt, after_ms=gap_ms)
    h.add(Heartbeat(heartbeat_ms), attempt=attempt, after_ms=gap_ms)
    h.add(StepStarted("load"), attempt=attempt, after_ms=gap_ms)
    h.add(
        ArtifactUsed(f"s3://raw/{dataset}/{band}.fits", "sha256:aa", 1 << 20, "input", "load"),
        attempt=attempt,
        after_ms=gap_ms,
    )
    h.add(ResourceSample(1.5, 0.25, 200 << 20, 210 << 20, 1 << 20, 0, threads=8), attempt=attempt, after_ms=gap_ms)
    h.add(StepFinished("load", status="succeeded"), attempt=attempt, after_ms=gap_ms)
    h.add(StepStarted("measure", parent_step="load"), attempt=attempt, after_ms=gap_ms)
    h.add(MetricMeasured("AM1", 0.51, "arcsec"), attempt=attempt, after_ms=gap_ms)
    h.add(MetricMeasured("AM1", 0.47, "arcsec", tags={"band": "g"}), attempt=attempt, after_ms=gap_ms)
    h.add(MetricMeasured("throughput", 1234.5, "rows/s"), attempt=attempt, after_ms=gap_ms)
    h.add(
        MetricMeasured("PA1", 12.0, "mmag", comparability_keys=["dataset", "band"], step="measure"),
        attempt=attempt,
        after_ms=gap_ms,
    )
    h.add(MetricMeasured("loss", 0.03, tags={"epoch": "3"}, step="measure"), attempt=attempt, after_ms=gap_ms)
    for i in range(n_metrics):
        tags = {"band": "z"} if i % 2 else {}
        h.add(MetricMeasured("AM2", 1.0 + i / 8, "arcsec", tags=tags), attempt=attempt, after_ms=gap_ms)
    h.add(Heartbeat(heartbeat_ms), attempt=attempt, after_ms=gap_ms)
    if late_provenance:
        h.add(declared, attempt=attempt, after_ms=gap_ms)
    # The capture thread declares the installed packages later: numpy's version there wins (later event time).
    h.add(ProvenanceDeclared(software={"numpy": "2.0.1", "scipy": "1.13.0"}), attempt=attempt, after_ms=gap_ms)
    h.add(ResourceSample(9.0, 1.0, 300 << 20, 350 << 20, 5 << 20, 2 << 20, threads=8), attempt=attempt, after_ms=gap_ms)
    h.add(StepFinished("measure", status="succeeded", caveats=["partial sky"]), attempt=attempt, after_ms=gap_ms)
    h.add(
        ArtifactProduced(f"s3://out/{h.job_id}/coadd-{band}.fits", "sha256:bb", 3 << 20, "coadd", "measure"),
        attempt=attempt,
        after_ms=gap_ms,
    )
    # The wrapper's final totals: after the tree exited, so not activity.
    h.add(
        ResourceSample(9.5, 1.1, 0, 350 << 20, 5 << 20, 3 << 20, threads=0, processes=0),
        attempt=attempt,
        after_ms=gap_ms,
    )


def make_history(
    job_id: str = "job-1",
    *,
    band: str = "r",
    dataset: str = "dr1",
    n_metrics: int = 2,
    second_attempt: bool = False,
    late_provenance: bool = False,
    gap_ms: int = 1000,
    parent_job_id: str | None = "parent-1",
    workflow_id: str | None = "wf-7",
    late_annotation: bool = True,
    echo_start: bool = False,
    running: bool = False,
) -> list[Event]:
    """A realistic history: submitted, started, provenance, steps, metrics, artifacts, samples, heartbeats,
    finished; with ``second_attempt`` attempt 1 is preempted and attempt 2 succeeds; an annotation from the CLI
    arrives after the end. ``running`` leaves out the last JobFinished; ``echo_start`` adds a second JobStarted
    per attempt from another producer."""
    h = History(job_id)
    common = {
        "band": band,
        "dataset": dataset,
        "n_metrics": n_metrics,
        "late_provenance": late_provenance,
        "gap_ms": gap_ms,
        "parent_job_id": parent_job_id,
        "workflow_id": workflow_id,
        "echo_start": echo_start,
    }
    _run_attempt(h, 1, **common)
    if second_attempt:
        h.add(JobFinished("preempted", exit_code=143, signal=15, duration_ms=20_000), attempt=1, after_ms=gap_ms)
        _run_attempt(h, 2, **common)
        if not running:
            h.add(JobFinished("succeeded", exit_code=0, duration_ms=18_000), attempt=2, after_ms=gap_ms)
    elif not running:
        h.add(JobFinished("succeeded", exit_code=0, duration_ms=21_000), after_ms=gap_ms)
    if late_annotation:
        h.add(
            Annotation("reviewed", "ok", author="bob"),
            attempt=2 if second_attempt else 1,
            after_ms=gap_ms + 60_000,
            instance="cli-annotate",
            producer="jobprov-cli",
        )
    return h.events


def job_histories() -> st.SearchStrategy[list[Event]]:
    return st.builds(
        make_history,
        job_id=st.sampled_from(["job-a", "job-b"]),
        band=st.sampled_from(["g", "r", "i"]),
        dataset=st.sampled_from(["dr1", "dr2"]),
        n_metrics=st.integers(0, 3),
        second_attempt=st.booleans(),
        late_provenance=st.booleans(),
        gap_ms=st.sampled_from([0, 1, 250, 1000]),
        parent_job_id=st.sampled_from([None, "parent-1"]),
        workflow_id=st.sampled_from([None, "wf-7"]),
        late_annotation=st.booleans(),
        echo_start=st.booleans(),
        running=st.booleans(),
    )


def fold_all(
    events: Iterable[Event], context: FoldContext = CONTEXT, state: JobFoldState | None = None
) -> tuple[JobFoldState, list[Record]]:
    outputs: list[Record] = []
    for event in events:
        state, out = fold(state, event, context)
        outputs += out
    assert state is not None
    return state, outputs


def latest_per_key(outputs: Iterable[Record]) -> dict[tuple[str, ...], Record]:
    """What a sink keeps (see ``materialize``: the highest state_version per key, bucket moves applied), with
    state_version zeroed (version numbers depend on arrival order, content must not)."""
    outputs = list(outputs)
    seen: dict[tuple[str, ...], Record] = {}
    for record in outputs:
        key = (record.KIND, *record.key())
        current = seen.get(key)
        if current is not None and current.state_version == record.state_version:
            assert current == record, f"two different records for {key} at one state_version"
        if current is None or record.state_version >= current.state_version:
            seen[key] = record
    return {(kind, *key): content_of(record) for (kind, key), record in materialize(outputs).items()}


@pytest.fixture(scope="session")
def history() -> type[History]:
    return History


@pytest.fixture(scope="session")
def realistic() -> Callable[..., list[Event]]:
    return make_history


@pytest.fixture(scope="session")
def histories() -> st.SearchStrategy[list[Event]]:
    return job_histories()


@pytest.fixture(scope="session")
def context() -> FoldContext:
    return CONTEXT


@pytest.fixture(scope="session")
def fold_events() -> Callable[..., tuple[JobFoldState, list[Record]]]:
    return fold_all


@pytest.fixture(scope="session")
def latest() -> Callable[[Iterable[Record]], dict[tuple[str, ...], Record]]:
    return latest_per_key
