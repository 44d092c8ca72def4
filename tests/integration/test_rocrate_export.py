"""`jobprov export rocrate RUN`: a run, its members, inputs and outputs as an RO-Crate that loads back in `rocrate`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobprov.query.api import create_app
from jobprov.query.store import Store
from jobprov.schemas.models import ArtifactProduced, ArtifactUsed, JobFinished, JobStarted, JobSubmitted
from tests.integration.conftest import serving
from tests.integration.test_openlineage_export import _fold


@pytest.fixture
def api(store: Any) -> Iterator[str]:
    started = JobStarted(host="h1", os="linux", kernel="6", cwd="/")
    _fold(
        store,
        {
            "campaign-2": [JobSubmitted(name="campaign", kind="pipeline", submitter="alice"), started],
            "calib-1": [
                JobSubmitted(name="calibrate", kind="batch", parent_job_id="campaign-2"),
                started,
                ArtifactUsed(uri="s3://raw/visit-1.fits"),
                ArtifactProduced(uri="s3://calexp/visit-1.fits"),
                JobFinished(status="succeeded", exit_code=0),
            ],
            "coadd-1": [
                JobSubmitted(name="coadd", kind="batch", workflow_id="campaign-2"),
                started,
                ArtifactUsed(uri="s3://calexp/visit-1.fits"),
                ArtifactUsed(uri="file:///etc/skymap.yaml"),
                ArtifactProduced(uri="s3://coadd/patch 1.fits"),
                JobFinished(status="failed", exit_code=1, exception_type="OSError", exception_message="disk full"),
            ],
        },
    )
    with serving(create_app(Store(store, store.jobprov_database))) as url:
        yield url


def _id(value: Any) -> str:
    """An entity's id, or a reference rocrate leaves as its id (schema.org terms)."""
    return str(getattr(value, "id", value))


def test_a_run_is_a_crate_with_its_members_inputs_and_outputs(api: str, tmp_path: Path) -> None:
    from rocrate.rocrate import ROCrate

    out = tmp_path / "crate"
    command = [sys.executable, "-m", "jobprov.cli.main", "export", "rocrate", "--api", api]
    done = subprocess.run([*command, "campaign-2", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = ROCrate(str(out))
    actions = {e.id: e for e in loaded.get_by_type("CreateAction")}
    assert set(actions) == {"#job-campaign-2", "#job-calib-1", "#job-coadd-1"}

    def ids(entity: Any, key: str) -> set[str]:
        value = entity.get(key) or []
        return {v.id for v in (value if isinstance(value, list) else [value])}

    run = actions["#job-campaign-2"]
    assert ids(run, "object") == {"s3://raw/visit-1.fits", "file:///etc/skymap.yaml"}, "inputs from outside the run"
    assert ids(run, "result") == {"s3://calexp/visit-1.fits", "s3://coadd/patch%201.fits"}
    assert run["instrument"].type == "ComputationalWorkflow" and run["agent"]["name"] == "alice"
    assert _id(run["actionStatus"]) == "http://schema.org/ActiveActionStatus", "the run's own job still runs"
    coadd = actions["#job-coadd-1"]
    assert _id(coadd["actionStatus"]) == "http://schema.org/FailedActionStatus" and coadd["error"] == "disk full"
    assert coadd["instrument"]["name"] == "coadd" and coadd["startTime"].startswith("2026-05-01T03:0")
    assert ids(coadd, "object") == {"s3://calexp/visit-1.fits", "file:///etc/skymap.yaml"}
    metadata = json.loads((out / "ro-crate-metadata.json").read_text())
    root = next(e for e in metadata["@graph"] if e["@id"] == "./")
    assert root["conformsTo"] == [{"@id": "https://w3id.org/ro/wfrun/process/0.5"}]
    assert root["mainEntity"] == {"@id": "#workflow-campaign"}
    assert {p["@id"] for p in root["hasPart"]} >= {"s3://coadd/patch%201.fits", "s3://raw/visit-1.fits"}

    again = tmp_path / "again"
    subprocess.run([*command, "campaign-2", "-o", str(again)], capture_output=True, timeout=120, check=True)
    assert (again / "ro-crate-metadata.json").read_text() == (out / "ro-crate-metadata.json").read_text()
    missing = subprocess.run([*command, "nope", "-o", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope" in missing.stderr
