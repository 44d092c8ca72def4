"""The emitter and the Job API, end to end into a spool-only transport (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest

from jobprov.emitters.emitter import Emitter
from jobprov.emitters.job import Job
from jobprov.emitters.spool import SpoolTransport, claim_segments, read_segment
from jobprov.schemas.models import (
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    StepFinished,
    StepStarted,
    from_avro,
    from_millis,
)
from jobprov.schemas.wire import SingleObjectCodec
from jobprov.settings import EmitterSettings, load_emitter_settings


def make_settings(spool: Path) -> EmitterSettings:
    return load_emitter_settings(
        {
            "url": f"file://{spool}",
            "spool_dir": str(spool),
            "capture_packages": False,
            "capture_git": False,
            "heartbeat_interval_s": 3600.0,
            "flush_timeout_s": 10.0,
        },
        env={},
    )


def make_emitter(spool: Path, **kwargs: Any) -> Emitter:
    return Emitter(make_settings(spool), SpoolTransport(spool), SingleObjectCodec(), **kwargs)


def read_spool(spool: Path) -> list[Event]:
    """Every event in the spool's segments, in segment and then file order."""
    events: list[Event] = []
    for segment in claim_segments(spool):
        try:
            contents = read_segment(segment.handle)
            assert contents.torn_tail is None
            events += [from_avro(Event, r) for r in contents.records]
        finally:
            segment.release()
    return events


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def emitter(spool: Path) -> Iterator[Emitter]:
    em = make_emitter(spool)
    yield em
    em.close()


@pytest.fixture(autouse=True)
def _not_inside_jobprov_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBPROV_JOB_ID", "JOBPROV_PARENT_STEP", "JOBPROV_ATTEMPT"):
        monkeypatch.delenv(name, raising=False)


# --- the emitter ------------------------------------------------------------------------------------------


def test_thousand_metrics(spool: Path, emitter: Emitter) -> None:
    for i in range(1000):
        emitter.emit("job-1", MetricMeasured(name="AM1", value=float(i)))
    report = emitter.close()
    assert report.spooled == 1000
    assert report.lost == 0
    assert report.errors == []
    events = read_spool(spool)
    assert len(events) == 1000
    assert [e.seq for e in events] == list(range(1, 1001))
    assert [e.payload.value for e in events] == [float(i) for i in range(1000)]
    assert len({e.event_id for e in events}) == 1000
    assert {e.producer.instance_id for e in events} == {emitter.producer.instance_id}
    assert {e.job_id for e in events} == {"job-1"}
    assert {e.event_type for e in events} == {"MetricMeasured"}
    assert all(isinstance(e.event_time, int) for e in events)  # epoch milliseconds
    assert all(e.emitted_at == e.event_time for e in events)  # no explicit time: the emit time


def test_event_time_is_honoured(spool: Path, emitter: Emitter) -> None:
    aware = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=2)))
    epoch = 1_700_000_000.987654
    emitter.emit("job-1", MetricMeasured(name="a", value=1.0), event_time=aware)
    emitter.emit("job-1", MetricMeasured(name="b", value=2.0), event_time=epoch)
    emitter.emit("job-1", MetricMeasured(name="c", value=3.0), event_time=0)
    emitter.close()
    first, second, third = read_spool(spool)
    assert from_millis(first.event_time) == datetime(2024, 2, 29, 21, 59, 59, 123000, tzinfo=UTC)
    assert second.event_time == 1_700_000_000_987
    assert third.event_time == 0
    assert first.emitted_at > first.event_time


def test_attempt_is_recorded(spool: Path, emitter: Emitter) -> None:
    emitter.emit("job-1", MetricMeasured(name="a", value=1.0), attempt=3)
    emitter.close()
    assert [e.attempt for e in read_spool(spool)] == [3]


def test_naive_event_time_never_raises(spool: Path, emitter: Emitter) -> None:
    emitter.emit("job-1", MetricMeasured(name="before", value=1.0))
    emitter.emit("job-1", MetricMeasured(name="naive", value=2.0), event_time=datetime(2024, 1, 1, 12, 0))
    emitter.emit("job-1", MetricMeasured(name="after", value=3.0))
    report = emitter.close()
    assert any("timezone-aware" in e for e in report.errors), report.errors
    events = read_spool(spool)
    assert [e.payload.name for e in events] == ["before", "after"]


def test_emit_after_close_does_not_raise(spool: Path, emitter: Emitter) -> None:
    emitter.emit("job-1", MetricMeasured(name="a", value=1.0))
    emitter.close()
    emitter.emit("job-1", MetricMeasured(name="late", value=2.0))
    assert [e.payload.name for e in read_spool(spool)] == ["a"]


def test_close_is_idempotent(spool: Path, emitter: Emitter) -> None:
    emitter.emit("job-1", MetricMeasured(name="a", value=1.0))
    first = emitter.close()
    second = emitter.close()
    assert second is first
    assert first.spooled == 1
    assert len(read_spool(spool)) == 1


def test_close_without_events(spool: Path, emitter: Emitter) -> None:
    report = emitter.close()
    assert report.spooled == 0
    assert report.errors == []


def test_bounded_queue_loses_nothing(spool: Path) -> None:
    emitter = make_emitter(spool, max_queue=10)
    for i in range(1000):
        emitter.emit("job-1", MetricMeasured(name="m", value=float(i)))
        assert len(emitter._queue) <= 10
    report = emitter.close()
    assert report.spooled == 1000
    events = read_spool(spool)
    assert len(events) == 1000
    assert sorted(e.seq for e in events) == list(range(1, 1001))
    assert len({e.event_id for e in events}) == 1000


def test_unencodable_payload_is_reported_not_raised(spool: Path, emitter: Emitter) -> None:
    emitter.emit("job-1", object())
    emitter.emit("job-1", MetricMeasured(name="ok", value=1.0))
    report = emitter.close()
    assert report.errors
    assert [e.payload.name for e in read_spool(spool)] == ["ok"]


def test_flush_hands_everything_to_the_transport(spool: Path, emitter: Emitter) -> None:
    for i in range(50):
        emitter.emit("job-1", MetricMeasured(name="m", value=float(i)))
    assert emitter.flush(5.0)
    # Without closing: the segment is still open (and locked), but every flushed block is on disk.
    [segment] = list(spool.glob("*.avro.open"))
    with segment.open("rb") as fh:
        assert len(list(fastavro.reader(fh))) == 50


# --- the Job API ------------------------------------------------------------------------------------------


def types_of(events: list[Event]) -> list[str]:
    return [e.event_type for e in events]


def test_job_context_manager(spool: Path, emitter: Emitter) -> None:
    with Job(name="validate_drp", kind="batch", emitter=emitter, provenance={"band": "r"}) as job:
        job.metric("AM1", 3.2, unit="mas", tags={"filter": "HSC-R"})
    emitter.close()
    events = read_spool(spool)
    assert types_of(events) == ["JobSubmitted", "JobStarted", "ProvenanceDeclared", "MetricMeasured", "JobFinished"]
    assert {e.job_id for e in events} == {job.job_id}
    submitted, started, declared, metric, finished = (e.payload for e in events)
    assert isinstance(submitted, JobSubmitted)
    assert submitted.name == "validate_drp"
    assert submitted.kind == "batch"
    assert isinstance(started, JobStarted)
    assert isinstance(declared, ProvenanceDeclared)
    assert declared.values == {"band": "r"}
    assert isinstance(metric, MetricMeasured)
    assert (metric.name, metric.value, metric.unit, metric.tags, metric.step) == (
        "AM1",
        3.2,
        "mas",
        {"filter": "HSC-R"},
        None,
    )
    assert isinstance(finished, JobFinished)
    assert finished.status == "succeeded"
    assert finished.exception_type is None
    assert finished.duration_ms is not None and finished.duration_ms >= 0


def test_job_failure(spool: Path, emitter: Emitter) -> None:
    class CalibrationError(RuntimeError):
        pass

    with pytest.raises(CalibrationError, match="bad flat"), Job(name="calib", emitter=emitter):
        raise CalibrationError("bad flat")
    emitter.close()
    finished = read_spool(spool)[-1].payload
    assert isinstance(finished, JobFinished)
    assert finished.status == "failed"
    assert finished.exception_type is not None and finished.exception_type.endswith("CalibrationError")
    assert finished.exception_message == "bad flat"


def test_job_keyboard_interrupt_is_aborted(spool: Path, emitter: Emitter) -> None:
    with pytest.raises(KeyboardInterrupt), Job(name="interrupted", emitter=emitter):
        raise KeyboardInterrupt
    emitter.close()
    finished = read_spool(spool)[-1].payload
    assert isinstance(finished, JobFinished)
    assert finished.status == "aborted"


def test_job_system_exit_zero_is_success(spool: Path, emitter: Emitter) -> None:
    with pytest.raises(SystemExit), Job(name="exits", emitter=emitter):
        raise SystemExit(0)
    emitter.close()
    finished = read_spool(spool)[-1].payload
    assert isinstance(finished, JobFinished)
    assert (finished.status, finished.exit_code) == ("succeeded", 0)


def test_job_decorator(spool: Path, emitter: Emitter) -> None:
    @Job(name="double", emitter=emitter)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    assert double(3) == 6
    emitter.close()
    events = read_spool(spool)
    submitted = [e for e in events if isinstance(e.payload, JobSubmitted)]
    finished = [e for e in events if isinstance(e.payload, JobFinished)]
    assert len(submitted) == 2
    assert len({e.job_id for e in submitted}) == 2
    assert {e.job_id for e in finished} == {e.job_id for e in submitted}
    assert all(e.payload.name == "double" for e in submitted)


def test_job_decorator_default_name(spool: Path, emitter: Emitter) -> None:
    @Job(emitter=emitter)
    def reduce_night() -> None:
        pass

    reduce_night()
    emitter.close()
    [submitted] = [e.payload for e in read_spool(spool) if isinstance(e.payload, JobSubmitted)]
    assert submitted.name.endswith("reduce_night")


def test_job_steps(spool: Path, emitter: Emitter) -> None:
    with Job(name="pipeline", emitter=emitter) as job:
        job.metric("outside", 0.0)
        with job.step("s"):
            job.metric("inside", 1.0)
            with job.step("t") as inner:
                inner.caveat("partial_outputs")
                job.metric("nested", 2.0)
        with pytest.raises(ValueError, match="x"), job.step("u"):
            raise ValueError("x")
    emitter.close()
    events = read_spool(spool)
    steps = [(e.event_type, e.payload.name) for e in events if isinstance(e.payload, StepStarted | StepFinished)]
    assert steps == [
        ("StepStarted", "s"),
        ("StepStarted", "t"),
        ("StepFinished", "t"),
        ("StepFinished", "s"),
        ("StepStarted", "u"),
        ("StepFinished", "u"),
    ]
    metrics = {e.payload.name: e.payload.step for e in events if isinstance(e.payload, MetricMeasured)}
    assert metrics == {"outside": None, "inside": "s", "nested": "t"}
    started = {e.payload.name: e.payload for e in events if isinstance(e.payload, StepStarted)}
    assert started["t"].parent_step == "s"
    finished = {e.payload.name: e.payload for e in events if isinstance(e.payload, StepFinished)}
    assert finished["s"].status == "succeeded"
    assert finished["t"].caveats == ["partial_outputs"]
    assert (finished["u"].status, finished["u"].exception_type) == ("failed", "ValueError")
    assert isinstance(events[-1].payload, JobFinished)
    assert events[-1].payload.status == "succeeded"


def test_joined_job_is_a_step_of_the_outer_job(spool: Path, emitter: Emitter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROV_JOB_ID", "outer-job")
    with Job(name="inner", emitter=emitter, provenance={"band": "r"}) as job:
        job.metric("AM1", 1.0)
    emitter.close()
    events = read_spool(spool)
    assert {e.job_id for e in events} == {"outer-job"}
    kinds = types_of(events)
    assert "JobSubmitted" not in kinds
    assert "JobStarted" not in kinds
    assert "JobFinished" not in kinds
    assert kinds[0] == "StepStarted"
    assert kinds[-1] == "StepFinished"
    assert events[0].payload.name == "inner"
    assert events[-1].payload.name == "inner"
    assert events[-1].payload.status == "succeeded"
    [metric] = [e.payload for e in events if isinstance(e.payload, MetricMeasured)]
    assert metric.step == "inner"


def test_explicit_job_id_does_not_join(spool: Path, emitter: Emitter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBPROV_JOB_ID", "outer-job")
    with Job(name="own", job_id="own-id", emitter=emitter):
        pass
    emitter.close()
    events = read_spool(spool)
    assert {e.job_id for e in events} == {"own-id"}
    assert types_of(events)[0] == "JobSubmitted"


def test_backfilled_job(spool: Path, emitter: Emitter) -> None:
    when = datetime(2024, 4, 5, 6, 7, 8, 9000, tzinfo=UTC)
    with Job(name="historic", emitter=emitter, time=when, provenance={"band": "i"}) as job:
        job.metric("AM1", 3.0, time=when + timedelta(minutes=5))
    emitter.close()
    events = read_spool(spool)
    by_type = {e.event_type: e for e in events}
    at = {t: from_millis(e.event_time) for t, e in by_type.items()}
    assert at["JobSubmitted"] == at["JobStarted"] == at["ProvenanceDeclared"] == when
    assert at["MetricMeasured"] == when + timedelta(minutes=5)
    assert from_millis(by_type["JobSubmitted"].emitted_at) > when
    assert by_type["JobFinished"].payload.duration_ms is None


def test_backfilled_job_finished_explicitly_has_one_end(spool: Path, emitter: Emitter) -> None:
    start = datetime(2024, 4, 5, 6, 0, tzinfo=UTC)
    end = start + timedelta(hours=2)
    with Job(name="historic", emitter=emitter, time=start) as job:
        job.finish(status="succeeded", time=end)
    emitter.close()
    finished = [e for e in read_spool(spool) if isinstance(e.payload, JobFinished)]
    assert len(finished) == 1, [(e.event_time, e.payload.status) for e in finished]
    assert from_millis(finished[0].event_time) == end


def test_job_with_naive_time_never_raises(spool: Path, emitter: Emitter) -> None:
    with Job(name="naive", emitter=emitter, time=datetime(2024, 1, 1)) as job:
        job.metric("m", 1.0)
    report = emitter.close()
    assert any("timezone-aware" in e for e in report.errors)
    assert "MetricMeasured" in types_of(read_spool(spool))


def test_job_methods_swallow_bad_input(spool: Path, emitter: Emitter) -> None:
    with Job(name="sloppy", emitter=emitter) as job:
        job.metric("m", "not a number")  # type: ignore[arg-type]
        job.annotate("k", "v", job_id="x", artifact="y")
        job.metric("ok", 1.0)
    report = emitter.close()
    assert len(report.errors) == 2
    assert [e.payload.name for e in read_spool(spool) if isinstance(e.payload, MetricMeasured)] == ["ok"]


def test_a_recorded_step_has_its_own_times_status_and_redacted_message(spool: Path, emitter: Emitter) -> None:
    """Job.record_step: a step that already ran (a test), at its own times; an unknown status sends nothing."""
    at = datetime(2026, 9, 21, 12, 0, tzinfo=UTC).timestamp()
    secret = "password=hunter2hunter2 " + "x" * 5000
    with Job("tests", job_id="t-1", emitter=emitter) as job:
        job.record_step("a::b", "failed", start=at + 1, end=at + 3, attempt=2, exception_type="ValueError",
                        exception_message=secret)  # fmt: skip
        job.record_step("a::c", "skipped", start=at + 3, end=at + 3)
        job.record_step("a::d", "exploded", start=at, end=at)  # refused whole, never raised
    emitter.close()
    steps = [e for e in read_spool(spool) if e.event_type in ("StepStarted", "StepFinished")]
    assert [(e.event_type, e.payload.name, from_millis(e.event_time).second) for e in steps] == [
        ("StepStarted", "a::b", 1),
        ("StepFinished", "a::b", 3),
        ("StepStarted", "a::c", 3),
        ("StepFinished", "a::c", 3),
    ]
    failed = steps[1].payload
    assert (failed.status, failed.step_attempt, failed.exception_type) == ("failed", 2, "ValueError")
    assert "hunter2hunter2" not in failed.exception_message and len(failed.exception_message) <= 2000
