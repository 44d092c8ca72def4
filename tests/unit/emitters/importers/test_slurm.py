"""sacct --json -> records: arrays, requeues as attempts, states, exit codes, nodes, CPUs, MaxRSS; bad records named."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobprov.emitters.importers.send import BadInputError, check
from jobprov.emitters.importers.slurm import first_node, read_sacct_json
from jobprov.schemas.models import (
    JobFinished,
    JobStarted,
    JobStatusChanged,
    JobSubmitted,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
)

SAMPLE = Path(__file__).parents[3] / "samples" / "sacct.json"
T = 1777600000


def _by_job() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for record in read_sacct_json(SAMPLE.read_bytes(), str(SAMPLE)):
        out.setdefault(record.job_id, []).append(record)
    return out


def _one(records: list[Any], cls: type, attempt: int = 1) -> Any:
    found = [r for r in records if isinstance(r.payload, cls) and r.attempt == attempt]
    assert len(found) == 1, (cls, found)
    return found[0]


def test_a_completed_job_with_steps_nodes_cpus_and_max_rss() -> None:
    records = _by_job()["slurm-perlmutter-1001"]
    assert check(records) == []
    submitted = _one(records, JobSubmitted).payload
    assert (submitted.name, submitted.kind, submitted.submitter, submitted.machine) == (
        "reduce",
        "hpc",
        "alice",
        "perlmutter",
    )
    assert submitted.scheduler_ids == {"slurm_job_id": "1001", "slurm_cluster": "perlmutter"}
    assert submitted.requested_processes == 4
    started = _one(records, JobStarted)
    assert (started.payload.host, started.payload.cwd, started.time) == (
        "node01",
        "/home/alice/reduce",
        datetime.fromtimestamp(T + 60, UTC),
    )
    values = _one(records, ProvenanceDeclared).payload.values
    assert values == {"slurm.partition": "regular", "slurm.account": "astro", "slurm.qos": "normal",
                      "slurm.nodes": "node[01-02]", "slurm.state": "COMPLETED", "slurm.cpus": "4",
                      "slurm.mem_mb": "16000"}  # fmt: skip
    steps = {r.payload.name: r.payload.status for r in records if isinstance(r.payload, StepFinished)}
    assert steps == {"batch": "succeeded", "extern": "succeeded", "calibrate": "succeeded"}
    sample = _one(records, ResourceSample).payload
    assert (sample.peak_rss_bytes, sample.cpu_user_s, sample.cpu_system_s) == (4_294_967_296, 18.0, 2.0)
    finished = _one(records, JobFinished)
    assert (finished.payload.status, finished.payload.exit_code, finished.payload.duration_ms) == (
        "succeeded",
        0,
        600_000,
    )
    assert finished.time == datetime.fromtimestamp(T + 660, UTC)


def test_array_tasks_are_jobs_with_the_array_as_parent() -> None:
    jobs = _by_job()
    ok, oom = jobs["slurm-perlmutter-1010_0"], jobs["slurm-perlmutter-1010_1"]
    for task, records in enumerate((ok, oom)):
        submitted = _one(records, JobSubmitted).payload
        assert submitted.parent_job_id == "slurm-perlmutter-1010"
        assert submitted.scheduler_ids["slurm_array_task_id"] == str(task)
        assert submitted.scheduler_ids["slurm_array_job_id"] == "1010"
    finished = _one(oom, JobFinished).payload
    assert (finished.status, finished.signal) == ("failed", 9)
    assert _one(oom, StepFinished).payload.status == "failed"
    assert _one(oom, ResourceSample).payload.peak_rss_bytes == 16_777_216_000


def test_a_requeued_job_has_two_attempts() -> None:
    records = _by_job()["slurm-perlmutter-1020"]
    assert {r.attempt for r in records} == {1, 2}
    assert _one(records, JobFinished, attempt=1).payload.status == "preempted"
    assert _one(records, JobFinished, attempt=2).payload.status == "succeeded"
    assert _one(records, JobStarted, attempt=1).payload.host == "node05"
    assert _one(records, JobStarted, attempt=2).payload.host == "node06"


def test_cancelled_while_pending_and_still_pending() -> None:
    jobs = _by_job()
    cancelled = jobs["slurm-perlmutter-1030"]
    assert [type(r.payload).__name__ for r in cancelled] == ["JobSubmitted", "ProvenanceDeclared", "JobFinished"]
    assert _one(cancelled, JobFinished).payload.status == "aborted"
    pending = jobs["slurm-perlmutter-1040"]
    assert _one(pending, JobStatusChanged).payload.reason == "Resources"
    assert not any(isinstance(r.payload, JobFinished | JobStarted) for r in pending)


@pytest.mark.parametrize(
    ("nodes", "first"),
    [("node[01-04]", "node01"), ("gpu7,gpu9", "gpu7"), ("nid[001234,001240]", "nid001234"), ("", "")],
)
def test_first_node(nodes: str, first: str) -> None:
    assert first_node(nodes) == first


def _broken(change: Any) -> bytes:
    doc = json.loads(SAMPLE.read_text())
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", r"line 1, column 2: not JSON"),
        (b'{"meta": {}}', r"no 'jobs' list"),
        (_broken(lambda d: d["jobs"][2].update(job_id="1011")), r"jobs\[2\]: not a job record"),
        (_broken(lambda d: d["jobs"][0]["time"].update(submission=0)), r"jobs\[0\] \(job 1001\): no time/submission"),
        (
            _broken(lambda d: d["jobs"][0]["steps"][1]["step"].pop("name")),
            r"jobs\[0\] \(job 1001\) steps\[1\]: no step/name",
        ),
        (_broken(lambda d: d["jobs"][5]["state"].update(current=[])), r"jobs\[5\] \(job 1030\): no state/current"),
    ],
)
def test_bad_records_are_named_and_nothing_is_kept(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        read_sacct_json(data, "bad.json")
