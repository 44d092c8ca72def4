"""`jobprov export openlineage`: RunEvents that validate against the OpenLineage spec's own JSON schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobprov.query.api import create_app
from jobprov.query.backend import LocalBackend
from jobprov.query.exporters.openlineage import run_events, run_id
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    ArtifactProduced,
    ArtifactUsed,
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    Producer,
    ProvenanceDeclared,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.conftest import serving
from tests.integration.processing import ListDeadLetters

SPEC = Path(__file__).parents[1] / "samples" / "openlineage"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = {
    "parent": "ParentRunFacet",
    "nominalTime": "NominalTimeRunFacet",
    "errorMessage": "ErrorMessageRunFacet",
    "processing_engine": "ProcessingEngineRunFacet",
    "jobType": "JobTypeJobFacet",
}
T0 = datetime(2026, 5, 1, 3, tzinfo=UTC)


def _validator(ref: str) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    resources = []
    for path in SPEC.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    return Draft202012Validator({"$ref": ref}, registry=registry, format_checker=FormatChecker())


def _facet_ref(name: str) -> str:
    schema = json.loads((SPEC / f"{FACETS[name]}.json").read_text())
    return f"{schema['$id']}#/$defs/{FACETS[name]}"


def _validate_all(events: list[dict[str, Any]]) -> None:
    run_event = _validator(f"{CORE}#/$defs/RunEvent")
    for event in events:
        run_event.validate(event)
        for where in (event["run"], event["job"]):
            for name, facet in where.get("facets", {}).items():
                _validator(_facet_ref(name)).validate(facet)


def _fold(store: Any, jobs: dict[str, list[Any]]) -> None:
    producer = Producer("test", "0", "p")
    events = []
    for job_id, payloads in jobs.items():
        for seq, payload in enumerate(payloads, 1):
            t = T0 + timedelta(minutes=seq)
            events.append(
                Event(f"{job_id}-{seq}", job_id, type(payload).__name__, ms(t), ms(t), producer, seq, payload=payload)
            )
    raw = [RawEvent(encode_event(e), "t", 0, i) for i, e in enumerate(events)]
    Processor(ClickHouseSink(store, store.jobprov_database), ListDeadLetters(), FoldContext()).process_batch(raw)


@pytest.fixture
def jobs(store: Any) -> Store:
    started = JobStarted(host="h1", os="linux", kernel="6", cwd="/")
    _fold(
        store,
        {
            "calib-7": [
                JobSubmitted(name="calibrate", kind="batch", parent_job_id="campaign-1"),
                started,
                ProvenanceDeclared(values={"openlineage.nominal_start_time": "2026-05-01T03:00:00Z"}),
                ArtifactUsed(uri="s3://raw/visit-1.fits"),
                ArtifactUsed(uri="file:///etc/calib.yaml"),
                ArtifactProduced(uri="postgres://db:5432/warehouse.public.calexp"),
                JobFinished(status="failed", exit_code=1, exception_type="OSError", exception_message="disk full"),
            ],
            "running-1": [JobSubmitted(name="reduce", kind="hpc"), started],
            "campaign-1": [
                JobSubmitted(name="campaign", kind="pipeline"),
                started,
                ArtifactUsed(uri="s3://raw/visit-1.fits"),
                JobFinished(status="failed", exit_code=1),
            ],
            "calib-8": [
                JobSubmitted(name="calibrate", kind="batch", workflow_id="campaign-1", dag_node="calibrate[8]"),
                started,
                ArtifactProduced(uri="s3://calexp/visit-8.fits"),
                JobFinished(status="succeeded", exit_code=0),
            ],
        },
    )
    return Store(store, store.jobprov_database)


def test_exported_events_validate_against_the_spec(jobs: Store) -> None:
    events = run_events(LocalBackend(jobs).job("calib-7"))
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    _validate_all(events)
    start, fail = events
    assert start["run"]["runId"] == run_id("calib-7") == fail["run"]["runId"]
    assert start["eventTime"] == "2026-05-01T03:02:00Z" and fail["eventTime"] == "2026-05-01T03:07:00Z"
    assert start["run"]["facets"]["parent"]["run"]["runId"] == run_id("campaign-1")
    assert start["run"]["facets"]["nominalTime"]["nominalStartTime"] == "2026-05-01T03:00:00Z"
    assert fail["run"]["facets"]["errorMessage"]["message"] == "disk full"
    assert sorted((d["namespace"], d["name"]) for d in fail["inputs"]) == [
        ("file", "/etc/calib.yaml"),
        ("s3://raw", "visit-1.fits"),
    ]
    assert [(d["namespace"], d["name"]) for d in fail["outputs"]] == [("postgres://db:5432", "warehouse.public.calexp")]
    assert start["job"]["facets"]["jobType"]["jobType"] == "BATCH"


def test_a_bad_event_fails_the_same_validation(jobs: Store) -> None:
    """The validation can fail: the same check on a damaged event rejects it."""
    from jsonschema import ValidationError

    event = run_events(LocalBackend(jobs).job("calib-7"))[1]
    event["eventType"] = "FINISHED"
    with pytest.raises(ValidationError):
        _validator(f"{CORE}#/$defs/RunEvent").validate(event)
    del event["run"]["facets"]["errorMessage"]["programmingLanguage"]
    with pytest.raises(ValidationError):
        _validator(_facet_ref("errorMessage")).validate(event["run"]["facets"]["errorMessage"])


@pytest.fixture
def api(jobs: Store) -> Iterator[str]:
    with serving(create_app(jobs)) as url:
        yield url


def test_cli_writes_json_lines_and_a_running_job_has_only_its_start(api: str) -> None:
    command = [sys.executable, "-m", "jobprov.cli.main", "export", "openlineage", "--api", api]
    done = subprocess.run([*command, "running-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["eventType"] for e in events] == ["START"]
    _validator(f"{CORE}#/$defs/RunEvent").validate(events[0])
    missing = subprocess.run([*command, "nope"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_a_run_exports_with_its_members_and_validates(api: str) -> None:
    command = [sys.executable, "-m", "jobprov.cli.main", "export", "openlineage", "--api", api]
    done = subprocess.run([*command, "campaign-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    _validate_all(events)
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
    run, member_a, member_b = run_id("campaign-1"), run_id("calib-7"), run_id("calib-8")
    assert by_run == {run: ["START", "FAIL"], member_a: ["START", "FAIL"], member_b: ["START", "COMPLETE"]}
    times = [datetime.fromisoformat(e["eventTime"].replace("Z", "+00:00")) for e in events]
    assert times == sorted(times)
    for event in events:
        if event["run"]["runId"] != run and event["eventType"] == "START":
            parent = event["run"]["facets"]["parent"]
            assert parent["run"]["runId"] == run and parent["job"]["name"] == "campaign"
    outputs = [(d["namespace"], d["name"]) for e in events if e["run"]["runId"] == member_b for d in e["outputs"]]
    assert outputs == [("s3://calexp", "visit-8.fits")]
    # the member jobs alone export without the run's members
    single = subprocess.run([*command, "calib-8"], capture_output=True, text=True, timeout=120)
    assert {json.loads(line)["run"]["runId"] for line in single.stdout.splitlines()} == {member_b}
