"""`jobprov run` and `jobprov emit` as real processes against a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobprov.schemas.models import JobFinished, JobStarted, MetricMeasured, ResourceSample, StepStarted
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, events_of

JOBPROV = [sys.executable, "-m", "jobprov.cli.main"]


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env.update(
        JOBPROV_URL=url,
        JOBPROV_SPOOL_DIR=str(tmp_path / "spool"),
        JOBPROV_CAPTURE_PACKAGES="0",
        JOBPROV_SAMPLE_INTERVAL_S="0.2",
    )
    return env


def _finished(events: list) -> JobFinished:  # type: ignore[type-arg]
    finished = [e.payload for e in events if isinstance(e.payload, JobFinished)]
    assert len(finished) == 1
    return finished[0]


def test_exit_code_is_the_childs_and_recorded(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *JOBPROV,
            "run",
            "--name",
            "exits-3",
            "-p",
            "band=r",
            "--",
            sys.executable,
            "-c",
            "import time, sys; time.sleep(0.5); sys.exit(3)",
        ],
        env=_env(tmp_path, kafka.url(topic)),
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    events = events_of(consume(kafka.bootstrap, topic, expected=5))
    finished = _finished(events)
    assert (finished.status, finished.exit_code, finished.signal) == ("failed", 3, None)
    assert finished.duration_ms is not None and finished.duration_ms >= 500
    started = next(e.payload for e in events if isinstance(e.payload, JobStarted))
    assert started.command_line[0] == sys.executable
    assert any(isinstance(e.payload, ResourceSample) for e in events)
    assert len({e.job_id for e in events}) == 1


def test_sigterm_is_forwarded_and_recorded_as_aborted(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    marker = tmp_path / "child-started"
    proc = subprocess.Popen(
        [
            *JOBPROV,
            "run",
            "--",
            sys.executable,
            "-c",
            f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)",
        ],
        env=_env(tmp_path, kafka.url(topic)),
    )
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finished = _finished(events_of(consume(kafka.bootstrap, topic, expected=5)))
    assert (finished.status, finished.signal, finished.exit_code) == ("aborted", signal.SIGTERM, 143)


def test_programs_inside_a_wrapped_job_add_to_the_same_job(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    script = (
        f"{' '.join(JOBPROV)} emit metric AM1 3.25 --unit mas --tag band=r && "
        f'{sys.executable} -c "import jobprov\n'
        "with jobprov.job(name='inner') as j: j.metric('PA1', 7.5)\""
    )
    done = subprocess.run(
        [*JOBPROV, "run", "--", "sh", "-c", script], env=_env(tmp_path, kafka.url(topic)), timeout=60, check=False
    )
    assert done.returncode == 0
    events = events_of(consume(kafka.bootstrap, topic, expected=9))
    assert len({e.job_id for e in events}) == 1, "the shell's and Python's events joined the wrapping job"
    metrics = {e.payload.name: e.payload for e in events if isinstance(e.payload, MetricMeasured)}
    assert metrics["AM1"].value == 3.25 and metrics["AM1"].tags == {"band": "r"}
    assert metrics["PA1"].step == "inner"
    assert [e.payload.name for e in events if isinstance(e.payload, StepStarted)] == ["inner"]
    assert _finished(events).status == "succeeded"
    assert not any(e.event_type == "JobSubmitted" and e.producer.name != "jobprov-run" for e in events)


def test_missing_program_fails_cleanly(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*JOBPROV, "run", "--", "/nonexistent/program"],
        env=_env(tmp_path, kafka.url(topic)),
        timeout=60,
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 127
    assert "cannot start" in done.stderr
    finished = _finished(events_of(consume(kafka.bootstrap, topic, expected=4)))
    assert finished.status == "failed" and finished.exception_type == "FileNotFoundError"
