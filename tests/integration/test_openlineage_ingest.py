"""The real openlineage-python client posting to POST /api/v1/lineage: through the broker into the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobprov.query.api import create_app
from jobprov.query.store import Store
from jobprov.query.tokens import token_hash
from jobprov.settings import ApiSettings, EmitterSettings
from tests.integration.conftest import Endpoint, serving
from tests.integration.kafka_helpers import consume
from tests.integration.test_importers import _fold, _rows

RUN_ID = "0190f5a3-6a4b-7c2d-9e8f-0a1b2c3d4e5f"
PARENT = "0190f5a3-0000-7000-8000-000000000001"


WRITER = "ingest-token-for-tests"
WRITE = {"Authorization": f"Bearer {WRITER}"}


@pytest.fixture
def api(store: Any, kafka: Endpoint, topic: str, tmp_path: Path) -> Iterator[str]:
    settings = EmitterSettings(url=kafka.url(topic), spool_dir=str(tmp_path / "spool"), flush_timeout_s=10.0)
    access = ApiSettings(tokens=(f"{token_hash(WRITER)}:write",))  # ingest is a write: it takes a token
    with serving(create_app(Store(store, store.jobprov_database), settings=access, ingest=settings)) as url:
        yield url


def _client(url: str) -> Any:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    auth = ApiKeyTokenProvider({"apiKey": WRITER})  # sends Authorization: Bearer WRITER
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=url, auth=auth)))


def _events() -> list[Any]:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated import (
        error_message_run,
        job_type_job,
        nominal_time_run,
        parent_run,
        processing_engine_run,
    )

    facets = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=PARENT), job=parent_run.Job(namespace="airflow", name="nightly_dag")
        ),
        "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime="2026-05-01T00:00:00Z"),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(version="2.9.1", name="Airflow"),
    }
    job = Job(
        namespace="airflow",
        name="nightly_dag.reduce",
        facets={"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW", jobType="TASK")},
    )
    start = RunEvent(
        eventType=RunState.START,
        eventTime="2026-05-01T00:05:00.000Z",
        run=Run(runId=RUN_ID, facets=facets),
        job=job,
        inputs=[InputDataset(namespace="s3://raw", name="hsc/visit-1.fits")],
    )
    error = error_message_run.ErrorMessageRunFacet(message="disk full", programmingLanguage="python")
    fail = RunEvent(
        eventType=RunState.FAIL,
        eventTime="2026-05-01T00:07:30.000Z",
        run=Run(runId=RUN_ID, facets={"errorMessage": error}),
        job=job,
        outputs=[OutputDataset(namespace="postgres://db:5432", name="warehouse.public.calexp")],
    )
    return [start, fail]


def test_openlineage_client_events_become_a_job(api: str, kafka: Endpoint, topic: str, store: Any) -> None:
    client = _client(api)
    start, fail = _events()
    client.emit(start)
    client.emit(start)  # a retry: changes nothing
    client.emit(fail)
    messages = consume(kafka.bootstrap, topic, expected=9)
    _fold(store, messages)
    job = _rows(
        store,
        "SELECT name, kind, status, parent_job_id, exception_message, started_at, finished_at FROM {db}.jobs FINAL",
    )
    assert len(job) == 1
    name, kind, status, parent, message, started, finished = job[0]
    assert (name, kind, status, parent, message) == ("nightly_dag.reduce", "pipeline", "failed", PARENT, "disk full")
    assert (finished - started).total_seconds() == 150
    values = _rows(store, "SELECT values FROM {db}.provenance FINAL")[0][0]
    assert {k: v for k, v in values.items() if k.startswith("openlineage.")} == {
        "openlineage.namespace": "airflow",
        "openlineage.parent.run_id": PARENT,
        "openlineage.parent.job_namespace": "airflow",
        "openlineage.parent.job_name": "nightly_dag",
        "openlineage.nominal_start_time": "2026-05-01T00:00:00Z",
        "openlineage.processing_engine.name": "Airflow",
        "openlineage.processing_engine.version": "2.9.1",
        "openlineage.job_type.processing_type": "BATCH",
        "openlineage.job_type.integration": "AIRFLOW",
        "openlineage.job_type.job_type": "TASK",
        "openlineage.error.message": "disk full",
        "openlineage.error.programming_language": "python",
    }
    edges = set(_rows(store, "SELECT relation, src, dst FROM {db}.lineage FINAL"))
    job_node = f"job:{RUN_ID}"
    assert {e for e in edges if e[0] in ("used", "produced")} == {
        ("used", "artifact:s3://raw/hsc/visit-1.fits", job_node),
        ("produced", job_node, "artifact:postgres://db:5432/warehouse.public.calexp"),
    }


def test_a_bad_body_is_refused_with_the_fields_named(api: str, kafka: Endpoint, topic: str) -> None:
    bad = {"eventType": "BEGIN", "run": {}, "job": {"namespace": "n"}, "producer": "x", "schemaURL": "y"}
    answer = httpx.post(f"{api}/api/v1/lineage", json=bad, timeout=30, headers=WRITE)
    assert answer.status_code == 400
    detail = " ".join(answer.json()["detail"])
    assert "run.runId: missing" in detail and "job.name: missing" in detail and "'BEGIN'" in detail
    assert "eventTime: missing" in detail
    static = {
        "eventTime": "2026-05-01T00:00:00Z",
        "producer": "x",
        "schemaURL": "y",
        "dataset": {"namespace": "n", "name": "d"},
    }
    assert httpx.post(f"{api}/api/v1/lineage", json=static, timeout=30, headers=WRITE).status_code == 200
    assert consume(kafka.bootstrap, topic, expected=0, timeout=4, idle=2) == []


def test_ingest_without_a_write_token_is_refused(api: str) -> None:
    assert httpx.post(f"{api}/api/v1/lineage", json={}, timeout=30).status_code == 401
    reader = {"Authorization": "Bearer not-a-token"}
    assert httpx.post(f"{api}/api/v1/lineage", json={}, timeout=30, headers=reader).status_code in (401, 403)
