"""A backfilled job (``time=`` on the job) keeps its own clock: events without a time of their own fall inside
the job, at its start plus the real time elapsed, so durations stay true."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobprov.emitters.emitter import Emitter
from jobprov.emitters.job import Job
from jobprov.schemas.models import from_millis
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


@pytest.mark.parametrize("start", [START, START.timestamp()], ids=["datetime", "epoch-seconds"])
def test_every_event_of_a_backfilled_job_is_on_the_jobs_own_clock(
    tmp_path: Path, emitter: Emitter, start: datetime | float
) -> None:
    with Job("nightly", job_id="n-00", time=start, emitter=emitter) as job:
        job.metric("AM1", 10.0, unit="mas")
        with job.step("measure"):
            time.sleep(0.2)
            job.metric("AM2", 3.0)
        job.annotate("note", "late")
    emitter.close()
    events = read_spool(tmp_path / "spool")
    assert [e.event_type for e in events][:2] == ["JobSubmitted", "JobStarted"]
    times = [from_millis(e.event_time) for e in events]
    assert times[0] == START and times == sorted(times)  # in order, none before the start
    assert times[-1] - START >= timedelta(milliseconds=200)  # the sleep is inside the job
    assert times[-1] - START < timedelta(seconds=30)  # and nothing at "now", months later
    finished = events[-1]
    assert finished.event_type == "JobFinished"
    assert finished.payload.duration_ms is None  # the fold takes finish - start: the real 0.2 s and a bit
    assert all(from_millis(e.emitted_at) > START + timedelta(days=30) for e in events)  # emitted now, dated then


def test_explicit_times_still_win_and_a_finish_at_a_given_time_leaves_the_duration_to_the_times(
    tmp_path: Path, emitter: Emitter
) -> None:
    with Job("nightly", job_id="n-01", time=START, emitter=emitter) as job:
        job.metric("AM1", 10.0, time=START + timedelta(minutes=20))
        job.finish(time=START + timedelta(minutes=25))
    emitter.close()
    events = {e.event_type: e for e in read_spool(tmp_path / "spool")}
    assert from_millis(events["MetricMeasured"].event_time) == START + timedelta(minutes=20)
    assert from_millis(events["JobFinished"].event_time) == START + timedelta(minutes=25)
    assert events["JobFinished"].payload.duration_ms is None  # the fold takes finish - start: 25 minutes


def test_a_live_job_keeps_the_emitters_clock(tmp_path: Path, emitter: Emitter) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with Job("live", job_id="l-00", emitter=emitter) as job:
        assert job.now() is None
        job.metric("AM1", 1.0)
    emitter.close()
    assert all(from_millis(e.event_time) >= before for e in read_spool(tmp_path / "spool"))
