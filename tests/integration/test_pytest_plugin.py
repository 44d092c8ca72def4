"""`pytest --jobprov`: an inner pytest session (pytester, in a subprocess that loads the plugin through its entry
point) recorded as a job through the real broker, folded into the real store and read through the query API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobprov.embedded.tansu import free_port
from jobprov.query.backend import LocalBackend
from jobprov.query.store import Store
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, events_of
from tests.integration.test_importers import _fold, _rows

pytest_plugins = ["pytester"]

INNER = """
import pytest

def test_passes(record_property):
    record_property("rows", 1200)
    record_property("note", "not a number")

def test_fails():
    raise ValueError("bad value, token=ghp_abcdefghijklmnopqrstuvwxyz0123456789")

@pytest.mark.skip(reason="not on this machine")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False

@pytest.mark.parametrize("n", [1, 2])
def test_speed(jobprov_metric, n):
    jobprov_metric("throughput", 10.0 * n, unit="1/s", dataset="hsc")

class TestGroup:
    @pytest.fixture
    def broken(self):
        raise RuntimeError("setup broke")

    def test_setup_error(self, broken):
        pass
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    pytester.makepyfile(test_inner=INNER)
    for name in ("JOBPROV_JOB_ID", "JOBPROV_PARENT_STEP", "JOBPROV_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBPROV_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("JOBPROV_CAPTURE_PACKAGES", "0")
    monkeypatch.setenv("JOBPROV_CAPTURE_GIT", "0")
    monkeypatch.setenv("JOBPROV_FLUSH_TIMEOUT_S", "5")
    return pytester


def test_a_session_is_a_job_with_steps_and_metrics(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kafka: Endpoint, topic: str, store: Any
) -> None:
    monkeypatch.setenv("JOBPROV_URL", kafka.url(topic))
    result = inner.runpytest_subprocess("--jobprov", "--jobprov-job-id", "tests-1", "--jobprov-param", "branch=main")
    result.assert_outcomes(passed=3, failed=1, skipped=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(["jobprov: recorded job tests-1 (7 tests)"])
    messages = consume(kafka.bootstrap, topic, expected=30)
    _fold(store, messages)

    job = LocalBackend(Store(store, store.jobprov_database)).job("tests-1")
    assert (job["name"], job["kind"], job["status"], job["exit_code"]) == ("pytest", "ci", "failed", 1)
    assert job["exception_message"] == "pytest exit status 1 (TESTS_FAILED)"
    assert job["provenance"]["branch"] == "main"
    steps = _rows(
        store,
        "SELECT name, status, exception_type, exception_message, caveats FROM {db}.steps FINAL "
        "WHERE job_id = 'tests-1' ORDER BY name",
    )
    assert [(name.removeprefix("test_inner::"), status) for name, status, *_ in steps] == [
        ("TestGroup::test_setup_error", "failed"),
        ("test_fails", "failed"),
        ("test_known_bug", "skipped"),
        ("test_passes", "succeeded"),
        ("test_skipped", "skipped"),
        ("test_speed[1]", "succeeded"),
        ("test_speed[2]", "succeeded"),
    ]
    by_name = {s[0].removeprefix("test_inner::"): s for s in steps}
    assert by_name["TestGroup::test_setup_error"][2:4] == ("RuntimeError", "setup broke")
    failed_type, failed_message = by_name["test_fails"][2:4]
    assert failed_type == "ValueError" and failed_message.startswith("bad value")
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123456789" not in failed_message, "the message is redacted"
    assert by_name["test_skipped"][2:] == (None, "Skipped: not on this machine", [])
    assert by_name["test_known_bug"][2:] == (None, "xfail: known bug", [])

    points = _rows(
        store, "SELECT metric, value, step, unit, tags FROM {db}.metric_points FINAL WHERE job_id = 'tests-1'"
    )
    metrics = {name.removeprefix("test_inner::"): value for name, value, *_ in points}
    speed = next(p for p in points if p[0] == "test_inner::test_speed[2].throughput")
    assert speed[2:] == ("test_inner::test_speed[2]", "1/s", {"dataset": "hsc"}), "in its step, with unit and tags"
    assert metrics["test_passes.rows"] == 1200.0
    assert "test_passes.note" not in metrics
    assert (metrics["test_speed[1].throughput"], metrics["test_speed[2].throughput"]) == (10.0, 20.0)
    assert (metrics["pytest.passed"], metrics["pytest.failed"], metrics["pytest.skipped"]) == (3.0, 2.0, 2.0)
    durations = {e.payload.name: e for e in events_of(messages) if e.event_type == "StepFinished"}
    assert set(durations) == {s[0] for s in steps}


def test_a_broker_down_never_fails_the_session_and_events_wait_in_the_spool(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOBPROV_URL", f"kafka://127.0.0.1:{free_port()}/events")
    monkeypatch.setenv("JOBPROV_DELIVERY_TIMEOUT_MS", "2000")
    result = inner.runpytest_subprocess("--jobprov", "--jobprov-job-id", "tests-2")
    result.assert_outcomes(passed=3, failed=1, skipped=1, xfailed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    spooled = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
    assert spooled, "the session's events are in the spool"


def test_without_the_flag_nothing_is_recorded_and_the_fixture_is_a_no_op(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kafka: Endpoint, topic: str
) -> None:
    monkeypatch.setenv("JOBPROV_URL", kafka.url(topic))
    result = inner.runpytest_subprocess()
    result.assert_outcomes(passed=3, failed=1, skipped=1, xfailed=1, errors=1)
    assert "jobprov: recorded" not in result.stdout.str()
    assert consume(kafka.bootstrap, topic, expected=0, timeout=4, idle=2) == []


def test_inside_jobprov_run_the_session_is_a_step_of_the_wrapping_job(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kafka: Endpoint, topic: str
) -> None:
    monkeypatch.setenv("JOBPROV_URL", kafka.url(topic))
    monkeypatch.setenv("JOBPROV_JOB_ID", "outer-1")  # what `jobprov run` sets for the program it wraps
    result = inner.runpytest_subprocess("--jobprov")
    result.assert_outcomes(passed=3, failed=1, skipped=1, xfailed=1, errors=1)
    events = events_of(consume(kafka.bootstrap, topic, expected=20))
    assert {e.job_id for e in events} == {"outer-1"}
    assert not [e for e in events if e.event_type in ("JobSubmitted", "JobFinished")], "the wrapper owns the job"
    finished = {e.payload.name: e.payload for e in events if e.event_type == "StepFinished"}
    assert finished["pytest"].status == "failed"
    started = [e.payload for e in events if e.event_type == "StepStarted" and e.payload.name != "pytest"]
    assert len(started) == 7 and {s.parent_step for s in started} == {"pytest"}
