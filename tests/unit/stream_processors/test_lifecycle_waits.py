"""Queued and held: scheduler-side states of a job, in any arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import Event, JobFinished, JobStarted, JobStatusChanged, JobSubmitted, Producer
from jobprov.stream_processors.fold import FoldContext, fold, snapshot

T0 = timestamp_millis(datetime(2026, 4, 1, tzinfo=UTC))
P = Producer("test", "0", "p")


def _events(*payloads: Any) -> list[Event]:
    return [
        Event(f"e{n}", "job", type(p).__name__, T0 + 1000 * n, T0 + 1000 * n, P, n, payload=p)
        for n, p in enumerate(payloads, 1)
    ]


def _status(events: list[Event]) -> str:
    state = None
    for event in events:
        state, _ = fold(state, event, FoldContext())
    assert state is not None
    return snapshot(state).status


SUBMIT = JobSubmitted(name="j", kind="hpc")
START = JobStarted(host="h", os="o", kernel="k", cwd="/")


@pytest.mark.parametrize(
    ("payloads", "expected"),
    [
        ((SUBMIT,), "submitted"),
        ((SUBMIT, JobStatusChanged("queued")), "queued"),
        ((SUBMIT, JobStatusChanged("queued"), JobStatusChanged("held", "quota")), "held"),
        ((SUBMIT, JobStatusChanged("held"), JobStatusChanged("released")), "queued"),
        ((SUBMIT, JobStatusChanged("queued"), START), "running"),
        ((SUBMIT, START, JobStatusChanged("held", "suspended")), "held"),
        ((SUBMIT, START, JobStatusChanged("held"), JobStatusChanged("released")), "running"),
        ((SUBMIT, JobStatusChanged("queued"), START, JobFinished("succeeded")), "succeeded"),
    ],
)
def test_every_arrival_order_gives_the_same_status(payloads: tuple[Any, ...], expected: str) -> None:
    events = _events(*payloads)
    for order in itertools.permutations(events):
        assert _status(list(order)) == expected


def test_job_api_and_cli_record_status_changes(tmp_path: Any) -> None:
    import fastavro
    from click.testing import CliRunner

    from jobprov.cli.main import cli
    from jobprov.emitters.emitter import create_emitter
    from jobprov.emitters.job import Job
    from jobprov.settings import load_emitter_settings

    spool = tmp_path / "spool"
    emitter = create_emitter(load_emitter_settings({"url": spool.as_uri(), "capture_packages": False}, env={}))
    with Job(name="j", emitter=emitter, job_id="job-x") as job:
        job.status("held", reason="maintenance")
        job.status("bogus")  # refused, recorded as an emitter failure, never raised
    report = emitter.close()
    assert any("bogus" in e for e in report.errors)
    result = CliRunner().invoke(cli, ["--url", spool.as_uri(), "emit", "status", "queued", "--job-id", "job-x"])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(cli, ["--url", spool.as_uri(), "emit", "status", "asleep", "--job-id", "job-x"])
    assert bad.exit_code == 2
    statuses = []
    for path in spool.iterdir():
        with path.open("rb") as fh:
            statuses += [r["payload"]["status"] for r in fastavro.reader(fh) if r["event_type"] == "JobStatusChanged"]
    assert sorted(statuses) == ["held", "queued"]
