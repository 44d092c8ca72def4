"""Values the pipeline could not take are refused by the emitter, with the rule named, never raised into a job."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobprov.emitters.job import Job
from jobprov.emitters.validate import MAX_TIME_MS, MIN_TIME_MS, check_code, check_event, check_import, check_status
from jobprov.errors import InvalidEventError, JobprovError
from jobprov.schemas.models import Annotation, MetricMeasured
from tests.unit.emitters.test_emitter import make_emitter, read_spool

NAME_RULE = "metric names must be non-empty and free of control characters"
VALUE_RULE = "metric values must be finite numbers"
TIME_RULE = "event times must lie between 1900-01-01 and 2299-12-31 UTC"

REFUSED: list[tuple[Any, int | None, str]] = [
    (MetricMeasured(name="AM1", value=math.nan), None, VALUE_RULE),
    (MetricMeasured(name="AM1", value=math.inf), None, VALUE_RULE),
    (MetricMeasured(name="AM1", value=-math.inf), None, VALUE_RULE),
    (MetricMeasured(name="", value=1.0), None, NAME_RULE),
    (MetricMeasured(name="AM\x001", value=1.0), None, NAME_RULE),
    (MetricMeasured(name="AM1\n", value=1.0), None, NAME_RULE),
    (MetricMeasured(name="AM\x7f", value=1.0), None, NAME_RULE),
    (MetricMeasured(name="AM1", value=1.0), int(1e15 * 1000), TIME_RULE),
    (Annotation(key="k", value="v"), MAX_TIME_MS, TIME_RULE),
    (Annotation(key="k", value="v"), MIN_TIME_MS - 1, TIME_RULE),
]
ACCEPTED: list[tuple[Any, int | None]] = [
    (MetricMeasured(name="AM1", value=0.0), None),
    (MetricMeasured(name="rms residual (mas) — ünïcode", value=-1e300), None),
    (MetricMeasured(name="AM1", value=1.0), MIN_TIME_MS),
    (MetricMeasured(name="AM1", value=1.0), MAX_TIME_MS - 1),
    (Annotation(key="", value=""), 0),
]


@pytest.mark.parametrize(("payload", "time_ms", "rule"), REFUSED)
def test_refused_with_the_rule_named(payload: Any, time_ms: int | None, rule: str) -> None:
    with pytest.raises(InvalidEventError, match=rule) as caught:
        check_event(payload, time_ms)
    assert isinstance(caught.value, JobprovError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("payload", "time_ms"), ACCEPTED)
def test_accepted(payload: Any, time_ms: int | None) -> None:
    check_event(payload, time_ms)


@pytest.mark.parametrize("host", ["", "nid\n1", "a\x00b"])
def test_a_named_host_must_be_text_without_control_characters(host: str) -> None:
    with pytest.raises(InvalidEventError, match="host: a host must be non-empty and free of control characters"):
        check_import(host=host)
    check_import(host="nid001 ü")


def test_a_jobs_end_takes_its_statuses_and_32_bit_codes() -> None:
    with pytest.raises(InvalidEventError, match="status must be one of succeeded, failed, aborted, preempted"):
        check_status("done")
    with pytest.raises(InvalidEventError, match="exit_code got 2147483648"):
        check_code("exit_code", 2**31)
    with pytest.raises(InvalidEventError, match="signal got 0"):
        check_code("signal", 0)
    with pytest.raises(InvalidEventError, match="exit_code got True"):
        check_code("exit_code", True)
    check_status("preempted")
    check_code("exit_code", -(2**31))
    check_code("signal", 9)


def test_the_time_range_is_the_stores(tmp_path: Path) -> None:
    assert datetime.fromtimestamp(MIN_TIME_MS / 1000, UTC) == datetime(1900, 1, 1, tzinfo=UTC)
    assert datetime.fromtimestamp(MAX_TIME_MS / 1000, UTC) == datetime(2300, 1, 1, tzinfo=UTC)


def test_the_job_api_reports_rejections_and_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = tmp_path / "spool"
    emitter = make_emitter(spool)
    with Job(name="validate", emitter=emitter, capture_environment=False) as job:
        job.metric("AM1", float("nan"))
        job.metric("AM1", float("-inf"))
        job.metric("", 1.0)
        job.metric("AM1", 1.0, time=1e15)
        job.metric("AM1", 1.0, time=float("nan"))
        job.annotate("k", "v", time=-1e12)
        job.metric("AM1", 2.0)
    report = emitter.close()
    assert report.rejected == 6
    metrics = [e.payload for e in read_spool(spool) if isinstance(e.payload, MetricMeasured)]
    assert metrics == [MetricMeasured(name="AM1", value=2.0)], "only the valid metric was recorded"
    err = capsys.readouterr().err
    assert "jobprov: 6 invalid events not recorded" in err
    for rule in (VALUE_RULE, NAME_RULE, TIME_RULE, "finite number of epoch seconds"):
        assert rule in err
    assert "events lost" not in err, "a refused event is not a delivery failure"


def test_a_rejection_message_never_carries_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emitter = make_emitter(tmp_path / "spool")
    emitter.emit("job-1", MetricMeasured(name="AM1 password=hunter2secret\n", value=1.0))
    emitter.emit("job-1", MetricMeasured(name="ghp_" + "Zq4mT8vK2pX9wL3nR7sD1fH6jB5cY0aE8gU2", value=math.nan))
    assert emitter.close().rejected == 2
    err = capsys.readouterr().err
    assert NAME_RULE in err and VALUE_RULE in err
    assert "hunter2secret" not in err and "Zq4mT8vK2pX9wL3nR7sD1fH6jB5cY0aE8gU2" not in err
