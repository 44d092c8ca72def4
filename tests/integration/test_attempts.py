"""Attempts as their own facts, job ids and URIs with "/", spaces and unicode, annotations on artifacts without a
job, and a bucket asked with the worker's registry: on the real engine, through the Python API, the CLI and HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient

from jobprov.cli.main import cli
from jobprov.embedded.tansu import free_port
from jobprov.query.api import create_app
from jobprov.query.artifacts import artifact
from jobprov.query.backend import HttpBackend
from jobprov.query.jobs import attempts, job_detail, status_counts
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Annotation,
    Event,
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
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.comparability import ComparabilityRegistry
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.conftest import _CHDB_STORE
from tests.integration.processing import ListDeadLetters

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
PRODUCER = Producer("test", "0", "p")
JOB = "pc1/A ü 1"  # a workflow's run/node id, with a space and a non-ASCII letter
URI = "s3://bucket/out dir/é.parq"
REGISTRY = ComparabilityRegistry(metrics={"AM1": ("dataset",)})  # not the default keys (dataset, band, config)


def _events() -> list[Event]:
    def at(minutes: int, payload: Any, attempt: int = 1, job: str = JOB) -> Event:
        t = T0 + timedelta(minutes=minutes)
        return Event(f"{job}-{minutes}", job, type(payload).__name__, ms(t), ms(t), PRODUCER, minutes, attempt,
                     payload=payload)  # fmt: skip

    started = {"os": "linux", "kernel": "6.1", "cwd": "/w"}
    carrier = f"artifact:{URI}"
    return [
        at(1, JobSubmitted(name="align", kind="workflow-step")),
        at(2, JobStarted(host="nid001", **started)),
        at(3, ProvenanceDeclared(values={"dataset": "hsc", "band": "r"})),
        at(4, StepStarted(name="warp")),
        at(
            5,
            ResourceSample(
                cpu_user_s=3.0, cpu_system_s=1.0, rss_bytes=1 << 20, peak_rss_bytes=2 << 20, threads=1, processes=1
            ),
        ),
        at(6, StepFinished(name="warp", status="failed", caveats=["partial output"], exception_type="OSError")),
        at(7, JobFinished(status="failed", exit_code=1, exception_type="OSError", exception_message="disk full")),
        at(10, JobSubmitted(name="align", kind="workflow-step"), 2),
        at(11, JobStarted(host="nid002", **started), 2),
        at(12, MetricMeasured(name="AM1", value=10.0, unit="mas"), 2),
        at(15, JobFinished(status="succeeded", exit_code=0), 2),
        # An annotation on an artifact, sent under no job of its own.
        at(20, Annotation(key="quality", value="bad", target_type="artifact", target=URI), job=carrier),
    ]


@pytest.fixture
def loaded(store: Any) -> Store:
    sink = ClickHouseSink(store, store.jobprov_database)
    processor = Processor(sink, ListDeadLetters(), FoldContext(registry=REGISTRY))
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(_events())])
    return Store(store, store.jobprov_database)


def test_each_attempt_keeps_its_own_host_times_and_outcome(loaded: Store) -> None:
    first, second = attempts(loaded, JOB)
    assert (first["status"], first["superseded"], first["host"]) == ("failed", True, "nid001")
    assert (first["exit_code"], first["exception_type"], first["exception_message"]) == (1, "OSError", "disk full")
    assert first["submitted_at"] == T0 + timedelta(minutes=1) and first["started_at"] == T0 + timedelta(minutes=2)
    assert first["finished_at"] == T0 + timedelta(minutes=7) and first["duration_ms"] == 5 * 60_000
    assert (first["cpu_user_s"], first["peak_rss_bytes"], first["caveats"]) == (3.0, 2 << 20, ["partial output"])
    assert (second["status"], second["superseded"], second["host"], second["exit_code"]) == (
        "succeeded", False, "nid002", 0)  # fmt: skip
    assert second["duration_ms"] == 4 * 60_000 and second["caveats"] == []
    detail = job_detail(loaded, JOB)
    # The job's wall time spans both attempts; the last attempt's run time is its own.
    assert detail["wall_time_ms"] == 13 * 60_000
    assert detail["last_attempt_duration_ms"] == detail["duration_ms"] == 4 * 60_000
    assert [a["status"] for a in detail["attempt_details"]] == ["failed", "succeeded"]


def test_an_annotation_on_an_artifact_makes_no_job(loaded: Store) -> None:
    assert status_counts(loaded) == {"succeeded": 1}
    rows = loaded.rows("SELECT target_type, target, value FROM {db}.annotations FINAL")
    assert rows == [("artifact", URI, "bad")]
    found = artifact(loaded, URI)  # known by its annotation alone
    assert (found["producers"], found["consumers"]) == ([], [])
    assert [(a["key"], a["value"]) for a in found["annotations"]] == [("quality", "bad")]
    client = TestClient(create_app(loaded, REGISTRY), base_url="http://localhost")
    assert client.get("/api/v1/artifact", params={"uri": URI}).json()["annotations"][0]["value"] == "bad"


def test_http_answers_ids_with_slashes_and_the_registrys_bucket(loaded: Store) -> None:
    client = TestClient(create_app(loaded, REGISTRY), base_url="http://localhost")
    quoted = "pc1%2FA%20%C3%BC%201"
    for path in (f"/api/v1/jobs/{quoted}", "/api/v1/jobs/pc1/A%20%C3%BC%201"):
        response = client.get(path)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["job_id"] == JOB and body["wall_time_ms"] == 13 * 60_000
        assert [(a["attempt"], a["status"], a["host"]) for a in body["attempt_details"]] == [
            (1, "failed", "nid001"), (2, "succeeded", "nid002")]  # fmt: skip
    resources = client.get(f"/api/v1/jobs/{quoted}/resources")
    assert resources.status_code == 200 and len(resources.json()) == 1
    assert client.get("/api/v1/jobs/pc1%2Fnone").status_code == 404
    assert client.get(f"/jobs/{quoted}").status_code == 200  # the job's web page
    assert client.get("/api/v1/status").json() == {"succeeded": 1}
    stored = loaded.rows("SELECT bucket FROM {db}.metric_points FINAL WHERE metric = 'AM1'")[0][0]
    found = client.get("/api/v1/buckets/AM1", params=[("provenance", "dataset=hsc"), ("provenance", "band=r")])
    assert found.status_code == 200
    assert found.json()["bucket"] == stored and found.json()["keys"] == {"dataset": "hsc"}
    assert found.json()["baseline"]["count"] == 1


@pytest.fixture
def api(loaded: Store) -> Iterator[str]:
    """The API served over a real socket (the CLI's --api and HttpBackend quote ids on the wire)."""
    server = uvicorn.Server(uvicorn.Config(create_app(loaded, REGISTRY), port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_http_backend_and_the_cli_ask_for_ids_with_slashes(api: str) -> None:
    backend = HttpBackend(api)
    assert [a["status"] for a in backend.job(JOB)["attempt_details"]] == ["failed", "succeeded"]
    assert len(backend.resources(JOB)) == 1
    assert backend.bucket("AM1", {"dataset": "hsc", "band": "r"})["baseline"]["count"] == 1
    runner = CliRunner()
    result = runner.invoke(cli, ["query", "--api", api, "job", JOB])
    assert result.exit_code == 0, result.output
    table = result.output.split("\n\n")[-1].splitlines()
    assert table[0].split()[:3] == ["attempt", "status", "host"]
    assert table[1].split()[:4] == ["1", "failed", "(superseded)", "nid001"]
    assert table[2].split()[:3] == ["2", "succeeded", "nid002"]
    summary = {" ".join(line.split()[1:-2]): " ".join(line.split()[-2:]) for line in result.output.splitlines()
               if line.startswith("job ")}  # fmt: skip
    assert summary["wall time"] == "13 min" and summary["last attempt"] == "4 min"
    as_json = runner.invoke(cli, ["query", "--api", api, "job", JOB, "--format", "json"])
    assert json.loads(as_json.output)["attempt_details"][0]["exit_code"] == 1


def test_query_job_on_the_store_prints_the_same(loaded: Store) -> None:
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "job", JOB], env=env)
    assert result.exit_code == 0, result.output
    assert "failed (superseded)" in result.output and "nid002" in result.output
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "status"], env=env)
    assert "unknown" not in result.output and "succeeded" in result.output
