"""Job.record_step: a step that already ran, at its own times, with its message redacted and cut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobprov.emitters.emitter import Emitter
from jobprov.emitters.job import Job
from tests.unit.emitters.test_emitter import make_emitter, read_spool

START = datetime(2026, 9, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def emitter(tmp_path: Path) -> Iterator[Emitter]:
    em = make_emitter(tmp_path / "spool")
    yield em
    em.close()


@pytest.fixture(autouse=True)
def _not_inside_jobprov_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBPROV_JOB_ID", "JOBPROV_PARENT_STEP", "JOBPROV_ATTEMPT"):
        monkeypatch.delenv(name, raising=False)


def test_a_recorded_step_has_its_own_times_status_and_redacted_message(tmp_path: Path, emitter: Emitter) -> None:
    secret = "password=hunter2hunter2 " + "x" * 5000
    with Job("tests", job_id="t-1", emitter=emitter) as job:
        job.record_step("a::b", "failed", start=START.timestamp() + 1, end=START.timestamp() + 3, attempt=2,
                        exception_type="ValueError", exception_message=secret)  # fmt: skip
        job.record_step("a::c", "skipped", start=START.timestamp() + 3, end=START.timestamp() + 3)
        job.record_step(
            "a::d", "exploded", start=START.timestamp(), end=START.timestamp()
        )  # refused whole, never raised
    emitter.close()
    steps = [e for e in read_spool(tmp_path / "spool") if e.event_type in ("StepStarted", "StepFinished")]
    assert [(e.event_type, e.payload.name, e.event_time.second) for e in steps] == [
        ("StepStarted", "a::b", 1),
        ("StepFinished", "a::b", 3),
        ("StepStarted", "a::c", 3),
        ("StepFinished", "a::c", 3),
    ]
    failed = steps[1].payload
    assert (failed.status, failed.step_attempt, failed.exception_type) == ("failed", 2, "ValueError")
    assert "hunter2hunter2" not in failed.exception_message and len(failed.exception_message) <= 2000
