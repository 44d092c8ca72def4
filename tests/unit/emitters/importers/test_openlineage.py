"""OpenLineage RunEvent bodies -> records: lifecycle by event type, dataset URIs, bad bodies named."""

from __future__ import annotations

import pytest

from jobprov.emitters.importers.openlineage import dataset_uri, read_run_event
from jobprov.emitters.importers.send import BadInputError, check
from jobprov.schemas.models import JobFinished, JobStarted, JobSubmitted

BASE = {"eventTime": "2026-05-01T00:00:00Z", "run": {"runId": "r-1"}, "job": {"namespace": "ns", "name": "j"}}


@pytest.mark.parametrize(
    ("event_type", "kinds"),
    [
        ("START", ["JobSubmitted", "JobStarted", "ProvenanceDeclared"]),
        ("RUNNING", ["ProvenanceDeclared"]),
        ("OTHER", ["ProvenanceDeclared"]),
        ("COMPLETE", ["ProvenanceDeclared", "JobFinished"]),
        ("FAIL", ["ProvenanceDeclared", "JobFinished"]),
        ("ABORT", ["ProvenanceDeclared", "JobFinished"]),
    ],
)
def test_event_types_map_to_the_lifecycle(event_type: str, kinds: list[str]) -> None:
    records = read_run_event({**BASE, "eventType": event_type})
    assert [type(r.payload).__name__ for r in records] == kinds
    assert check(records) == []
    finished = [r.payload for r in records if isinstance(r.payload, JobFinished)]
    expected = {"COMPLETE": "succeeded", "FAIL": "failed", "ABORT": "aborted"}.get(event_type)
    assert [f.status for f in finished] == ([expected] if expected else [])
    assert all(isinstance(r.payload, JobSubmitted | JobStarted) for r in records[:2]) or event_type != "START"


@pytest.mark.parametrize(
    ("namespace", "name", "uri"),
    [
        ("s3://bucket", "path/to/file.parquet", "s3://bucket/path/to/file.parquet"),
        ("postgres://db:5432", "warehouse.public.t", "postgres://db:5432/warehouse.public.t"),
        ("file", "/data/in.csv", "file:///data/in.csv"),
        ("bigquery", "project.dataset.table", "bigquery:project.dataset.table"),
    ],
)
def test_dataset_uris(namespace: str, name: str, uri: str) -> None:
    assert dataset_uri({"namespace": namespace, "name": name}) == uri


def test_the_same_event_gives_the_same_keys_and_static_events_nothing() -> None:
    one = read_run_event({**BASE, "eventType": "START"})
    assert one == read_run_event({**BASE, "eventType": "START"})
    assert read_run_event({"eventTime": "2026-05-01T00:00:00Z", "dataset": {"namespace": "n", "name": "d"}}) == []


def test_bad_bodies_name_every_field() -> None:
    with pytest.raises(BadInputError) as caught:
        read_run_event({"eventType": "DONE", "eventTime": "soon", "run": {}, "job": {}})
    assert caught.value.problems == [
        "run.runId: missing",
        "job.name: missing",
        "eventType: 'DONE' is not one of START, RUNNING, COMPLETE, ABORT, FAIL, OTHER",
        "eventTime: 'soon' is not ISO 8601",
    ]
    with pytest.raises(BadInputError, match=r"inputs\[0\]: a dataset needs"):
        read_run_event({**BASE, "eventType": "START", "inputs": [{"namespace": "n"}]})
