"""A history imported through the Python API (no jsonl): submit and start times, host, status, exit code and
signal of each attempt come back exactly through the query API on the real engine; bad values are refused at
the call, naming the argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobprov.emitters.job import Job
from jobprov.errors import InvalidEventError
from jobprov.query.api import create_app
from jobprov.query.store import Store
from tests.integration.processing import fold_into
from tests.unit.emitters.test_emitter import make_emitter, read_spool

T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
JOB = "pc1/align ü 7"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# Each attempt as the history has it: submitted, started, finished (minutes after T0), host, status, exit code,
# signal.
HISTORY = [
    (0, 5, 9, "nid001", "failed", 3, None),
    (12, 20, 21, "nid002", "preempted", None, 15),
    (30, 31, 47, "nid003", "succeeded", 0, None),
]


@pytest.fixture(autouse=True)
def _not_inside_jobprov_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBPROV_JOB_ID", "JOBPROV_PARENT_STEP", "JOBPROV_ATTEMPT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def imported(tmp_path: Path, store: Any) -> Store:
    emitter = make_emitter(tmp_path / "spool")
    for attempt, (submitted, started, finished, host, status, code, signal) in enumerate(HISTORY, start=1):
        job = Job("align", job_id=JOB, kind="batch", provenance={"model": "12"}, attempt=attempt,
                  submitted=at(submitted), time=at(started), host=host, capture_environment=False,
                  emitter=emitter)  # fmt: skip
        with job:
            job.metric("AM1", 10.0 + attempt, time=at(started + 0.5))
            job.finish(status=status, exit_code=code, signal=signal, time=at(finished))
    report = emitter.close()
    assert report.errors == [] and report.rejected == 0
    loaded: Store = fold_into(store, read_spool(tmp_path / "spool"))
    return loaded


def _iso(minutes: float) -> str:
    return at(minutes).isoformat()


def test_an_imported_history_reads_back_exactly_through_the_api(imported: Store) -> None:
    client = TestClient(create_app(imported), base_url="http://localhost")
    response = client.get("/api/v1/jobs/pc1%2Falign%20%C3%BC%207")
    assert response.status_code == 200, response.text
    body = response.json()
    got = [
        (a["attempt"], a["submitted_at"], a["started_at"], a["finished_at"], a["host"], a["status"], a["exit_code"],
         a["signal"], a["duration_ms"])
        for a in body["attempt_details"]
    ]  # fmt: skip
    want = [
        (i, _iso(s), _iso(b), _iso(f), host, status, code, signal, (f - b) * 60_000)
        for i, (s, b, f, host, status, code, signal) in enumerate(HISTORY, start=1)
    ]
    assert got == want
    assert (body["status"], body["exit_code"], body["attempts"]) == ("succeeded", 0, 3)
    assert body["started_at"] == _iso(5) and body["finished_at"] == _iso(47)
    assert body["wall_time_ms"] == 42 * 60_000 and body["last_attempt_duration_ms"] == 16 * 60_000
    assert body["provenance"]["host"] == "nid003" and body["provenance"]["model"] == "12"
    assert client.get("/api/v1/status").json() == {"succeeded": 1}


def test_bad_import_values_are_refused_at_the_call_naming_the_argument(tmp_path: Path) -> None:
    emitter = make_emitter(tmp_path / "spool")
    with pytest.raises(InvalidEventError, match="submitted: a job is submitted before it starts"):
        Job("a", job_id="x", submitted=at(5), time=at(1), emitter=emitter)
    with pytest.raises(InvalidEventError, match="host: a host must be non-empty"):
        Job("a", job_id="x", time=at(1), host="", emitter=emitter)
    with pytest.raises(InvalidEventError, match="time: event times must lie between"):
        Job("a", job_id="x", time=datetime(1800, 1, 1, tzinfo=UTC), emitter=emitter)
    with pytest.raises(InvalidEventError, match="needs time="):
        Job("a", job_id="x", submitted=at(1), emitter=emitter)
    with Job("a", job_id="x", time=at(1), capture_environment=False, emitter=emitter) as job:
        with pytest.raises(InvalidEventError, match="status must be one of succeeded"):
            job.finish(status="done", time=at(2))
        with pytest.raises(InvalidEventError, match="exit_code got 2147483648"):
            job.finish(status="failed", exit_code=2**31, time=at(2))
        with pytest.raises(InvalidEventError, match="signal got 0"):
            job.finish(status="failed", signal=0, time=at(2))
    emitter.close()
    finished = [e.payload for e in read_spool(tmp_path / "spool") if e.event_type == "JobFinished"]
    assert [f.status for f in finished] == ["succeeded"]  # refused ends sent nothing; __exit__ still ended it
