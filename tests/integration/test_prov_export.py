"""`jobprov export prov`: jobs, attempts, artifacts and agents as W3C PROV that loads back into `prov`."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from jobprov.query.api import create_app
from jobprov.query.backend import LocalBackend
from jobprov.query.exporters.prov import document, serialize
from jobprov.query.store import Store
from jobprov.schemas.models import (
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    JobFinished,
    JobStarted,
    JobSubmitted,
    ProvenanceDeclared,
)
from tests.integration.conftest import serving
from tests.integration.test_openlineage_export import _fold


@pytest.fixture
def jobs(store: Any) -> Store:
    started = JobStarted(host="node-17", os="linux", kernel="6", cwd="/")
    _fold(
        store,
        {
            "warp-1": [
                JobSubmitted(name="align_warp", kind="pipeline", submitter="alice"),
                started,
                ProvenanceDeclared(values={"dataset": "hsc", "band": "r"}),
                ArtifactUsed(uri="s3://raw/anatomy 1.img", checksum="sha256:ab12"),
                ArtifactProduced(uri="file:///w/warp1"),
                Annotation(key="quality", value="good", author="bob"),
                JobFinished(status="succeeded", exit_code=0),
            ],
            "reslice-1": [
                JobSubmitted(name="reslice", kind="pipeline", parent_job_id="warp-1"),
                started,
                ArtifactUsed(uri="file:///w/warp1"),
                JobFinished(status="failed", exit_code=2),
            ],
        },
    )
    return Store(store, store.jobprov_database)


def _load(text: str, fmt: str) -> Any:
    from prov.model import ProvDocument

    if fmt == "ttl":
        return ProvDocument.deserialize(io.StringIO(text), format="rdf", rdf_format="turtle")
    return ProvDocument.deserialize(io.StringIO(text), format="json")


def test_prov_document_has_activities_entities_agents_and_relations(jobs: Store) -> None:
    from prov.model import ProvActivity, ProvAgent, ProvAssociation, ProvEntity, ProvGeneration, ProvUsage

    backend = LocalBackend(jobs)
    doc = document([backend.job("warp-1"), backend.job("reslice-1")])
    records = doc.get_records()
    names = {str(r.identifier) for r in records if r.identifier is not None}
    assert {"job:warp-1", "job:warp-1/attempt/1", "job:reslice-1", "host:node-17", "user:alice"} <= names
    assert "artifact:s3%3A%2F%2Fraw%2Fanatomy%201.img" in names
    assert len([r for r in records if isinstance(r, ProvActivity)]) == 4
    assert len([r for r in records if isinstance(r, ProvEntity)]) == 2, "warp1 once, though two jobs touch it"
    assert len([r for r in records if isinstance(r, ProvAgent)]) == 2
    assert len([r for r in records if isinstance(r, ProvUsage)]) == 2
    assert len([r for r in records if isinstance(r, ProvGeneration)]) == 1
    assert len([r for r in records if isinstance(r, ProvAssociation)]) == 3
    warp = next(r for r in records if str(r.identifier) == "job:warp-1")
    attributes = {str(k): v for k, v in warp.attributes}
    assert attributes["jobprov:status"] == "succeeded"
    assert attributes["jobprov:dataset"] == "hsc"
    assert attributes["jobprov:annotation.quality"] == "good"


@pytest.mark.parametrize("fmt", ["json", "ttl"])
def test_serializations_load_back_unchanged(jobs: Store, fmt: str) -> None:
    backend = LocalBackend(jobs)
    doc = document([backend.job("warp-1"), backend.job("reslice-1")])
    loaded = _load(serialize(doc, fmt), fmt)
    assert loaded == doc


def test_provn_is_written(jobs: Store) -> None:
    text = serialize(document([LocalBackend(jobs).job("warp-1")]), "provn")
    assert text.startswith("document") and "activity(job:warp-1," in text and "wasGeneratedBy(" in text


@pytest.fixture
def api(jobs: Store) -> Iterator[str]:
    with serving(create_app(jobs)) as url:
        yield url


def test_cli_exports_an_artifact_with_its_producer_and_users(api: str) -> None:
    command = [sys.executable, "-m", "jobprov.cli.main", "export", "prov", "--api", api]
    done = subprocess.run(
        [*command, "file:///w/warp1", "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    doc = _load(done.stdout, "json")
    names = {str(r.identifier) for r in doc.get_records() if r.identifier is not None}
    assert {"job:warp-1", "job:reslice-1", "artifact:file%3A%2F%2F%2Fw%2Fwarp1"} <= names
    missing = subprocess.run([*command, "s3://nowhere/x"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no job produced or used" in missing.stderr


@pytest.mark.parametrize("fmt", ["json", "ttl"])
def test_cli_exports_a_run_with_its_members(api: str, fmt: str) -> None:
    from prov.model import ProvCommunication

    command = [sys.executable, "-m", "jobprov.cli.main", "export", "prov", "--api", api, "--format", fmt]
    done = subprocess.run([*command, "warp-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = _load(done.stdout, fmt)
    records = doc.get_records()
    names = {str(r.identifier) for r in records if r.identifier is not None}
    assert {"job:warp-1", "job:reslice-1", "job:reslice-1/attempt/1"} <= names
    informed = {
        (str(r.get_attribute("prov:informed").pop()), str(r.get_attribute("prov:informant").pop()))
        for r in records
        if isinstance(r, ProvCommunication)
    }
    assert ("job:reslice-1", "job:warp-1") in informed, "the member is linked to the run"
    member = subprocess.run([*command, "reslice-1"], capture_output=True, text=True, timeout=120)
    names = {str(r.identifier) for r in _load(member.stdout, fmt).get_records() if r.identifier is not None}
    assert "job:reslice-1" in names and "job:warp-1" not in names, "a member alone has no members"
    missing = subprocess.run([*command, "nope"], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope" in missing.stderr
