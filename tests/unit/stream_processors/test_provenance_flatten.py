"""Provenance flattening, latest-declaration-wins merging, and the lineage edges the fold emits."""

from __future__ import annotations

import itertools

import pytest

from jobprov.schemas.models import (
    ArtifactProduced,
    ArtifactUsed,
    ConfigRef,
    Dataset,
    GitInfo,
    JobStarted,
    JobSubmitted,
    ProvenanceDeclared,
)
from jobprov.stream_processors.provenance import flatten_declared, flatten_started, flatten_submitted
from jobprov.stream_processors.records import LineageEdge, ProvenanceRecord


def test_flatten_declared_names_every_key():
    declared = ProvenanceDeclared(
        values={"band": "r", "survey": "lsst"},
        datasets=[Dataset("dr1", "v3", "sha256:0f0f")],
        config=ConfigRef("cfg-9a1b", "s3://configs/cfg-9a1b.yaml"),
        software={"numpy": "1.26.4", "astropy": "6.0.1"},
        git=GitInfo("3e1f00d", "main", True, "git@example.org:pipe.git"),
        environment={"OMP_NUM_THREADS": "8"},
    )
    assert flatten_declared(declared) == {
        "band": "r",
        "survey": "lsst",
        "datasets.dr1.version": "v3",
        "datasets.dr1.checksum": "sha256:0f0f",
        "dataset": "dr1",
        "dataset.version": "v3",
        "config.hash": "cfg-9a1b",
        "config.snapshot_uri": "s3://configs/cfg-9a1b.yaml",
        "software.numpy": "1.26.4",
        "software.astropy": "6.0.1",
        "git.commit": "3e1f00d",
        "git.branch": "main",
        "git.dirty": "true",
        "git.remote": "git@example.org:pipe.git",
        "env.OMP_NUM_THREADS": "8",
    }


def test_flatten_declared_optional_parts():
    assert flatten_declared(ProvenanceDeclared()) == {}
    assert flatten_declared(ProvenanceDeclared(git=GitInfo("abc", dirty=False), config=ConfigRef("h"))) == {
        "git.commit": "abc",
        "git.dirty": "false",
        "config.hash": "h",
    }


def test_dataset_comes_from_a_single_declared_dataset_only():
    two = flatten_declared(ProvenanceDeclared(datasets=[Dataset("dr1", "v3"), Dataset("calib", "v9")]))
    assert "dataset" not in two
    assert two == {"datasets.dr1.version": "v3", "datasets.calib.version": "v9"}
    unversioned = flatten_declared(ProvenanceDeclared(datasets=[Dataset("dr1")]))
    assert unversioned == {"dataset": "dr1"}
    explicit = flatten_declared(ProvenanceDeclared(values={"dataset": "mine"}, datasets=[Dataset("dr1", "v3")]))
    assert explicit["dataset"] == "mine"
    assert "dataset.version" not in explicit
    assert explicit["datasets.dr1.version"] == "v3"


def test_flatten_lifecycle():
    started = JobStarted("nid001", "Linux", "6.1.0", "3.12.2", cwd="/", container_image="img:1")
    assert flatten_started(started) == {
        "host": "nid001",
        "os": "Linux",
        "kernel": "6.1.0",
        "python": "3.12.2",
        "container_image": "img:1",
    }
    assert flatten_submitted(JobSubmitted("train", "batch", machine="perlmutter")) == {
        "job.name": "train",
        "job.kind": "batch",
        "machine": "perlmutter",
    }
    assert flatten_submitted(JobSubmitted("train", "batch")) == {"job.name": "train", "job.kind": "batch"}


def _declarations(history):
    h = history("job-p")
    h.add(
        ProvenanceDeclared(
            values={"band": "r"},
            datasets=[Dataset("dr1", "v3")],
            software={"numpy": "1.26.4", "astropy": "6.0.1"},
            git=GitInfo("aaa", "main"),
        ),
        at_ms=1_000,
    )
    h.add(ProvenanceDeclared(software={"numpy": "2.0.1"}, git=GitInfo("bbb")), at_ms=2_000)
    h.add(ProvenanceDeclared(values={"band": "i", "dataset": "dr2"}), at_ms=3_000)
    h.add(JobStarted("nid001", "Linux", "6.1.0", cwd="/"), at_ms=500)
    return h.events


EXPECTED = {
    "band": "i",
    "dataset": "dr2",
    "dataset.version": "v3",  # only the first declaration set it
    "datasets.dr1.version": "v3",
    "software.numpy": "2.0.1",
    "software.astropy": "6.0.1",
    "git.commit": "bbb",
    "git.branch": "main",
    "host": "nid001",
    "os": "Linux",
    "kernel": "6.1.0",
}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_later_declarations_win_whatever_the_arrival_order(history, fold_events, latest, order):
    events = _declarations(history)
    state, outputs = fold_events([events[i] for i in order])
    assert state.provenance_values() == EXPECTED
    (record,) = [r for r in latest(outputs).values() if isinstance(r, ProvenanceRecord)]
    assert record.values == EXPECTED


def test_config_snapshot_uri_is_recorded(history, fold_events, latest):
    h = history("job-p")
    h.add(ProvenanceDeclared(config=ConfigRef("h1", "s3://cfg/1.yaml")), at_ms=2_000)
    h.add(ProvenanceDeclared(config=ConfigRef("h0", "s3://cfg/0.yaml")), at_ms=1_000)
    _, outputs = fold_events(h.events)
    (record,) = [r for r in latest(outputs).values() if isinstance(r, ProvenanceRecord)]
    assert record.config_snapshot_uri == "s3://cfg/1.yaml"
    assert record.values["config.hash"] == "h1"


# --- lineage ---------------------------------------------------------------------------------------------------


def test_artifact_edges(history, fold_events):
    h = history("job-l")
    used = h.add(ArtifactUsed("s3://raw/dr1.fits", "sha256:aa", 1024, "input", "load"))
    produced = h.add(ArtifactProduced("s3://out/cat.parquet", "sha256:bb", 2048, "catalog", "measure"))
    _, outputs = fold_events(h.events)
    assert outputs == [
        LineageEdge(
            src="artifact:s3://raw/dr1.fits",
            dst="job:job-l",
            relation="used",
            job_id="job-l",
            event_id=used.event_id,
            time_ms=history.ms(used),
            role="input",
            checksum="sha256:aa",
            size_bytes=1024,
            step="load",
            state_version=1,
        ),
        LineageEdge(
            src="job:job-l",
            dst="artifact:s3://out/cat.parquet",
            relation="produced",
            job_id="job-l",
            event_id=produced.event_id,
            time_ms=history.ms(produced),
            role="catalog",
            checksum="sha256:bb",
            size_bytes=2048,
            step="measure",
            state_version=2,
        ),
    ]


def test_parent_and_workflow_edges(history, fold_events):
    h = history("job-c")
    submitted = h.add(JobSubmitted("child", "pipeline", parent_job_id="job-p", workflow_id="wf-7"))
    _, outputs = fold_events(h.events)
    edges = [r for r in outputs if isinstance(r, LineageEdge)]
    assert [(e.src, e.dst, e.relation, e.event_id) for e in edges] == [
        ("job:job-p", "job:job-c", "parent", submitted.event_id),
        ("workflow:wf-7", "job:job-c", "member", submitted.event_id),
    ]
    assert len({e.key() for e in edges}) == 2
    assert all(e.role is None and e.step is None for e in edges)


def test_no_parent_no_workflow_no_edges(history, fold_events):
    h = history("job-c")
    h.add(JobSubmitted("solo", "batch"))
    _, outputs = fold_events(h.events)
    assert [r for r in outputs if isinstance(r, LineageEdge)] == []
    assert [type(r) for r in outputs] == [ProvenanceRecord]


def test_realistic_history_lineage(realistic, fold_events):
    _, outputs = fold_events(realistic("job-r", band="g"))
    edges = {(e.src, e.dst, e.relation) for e in outputs if isinstance(e, LineageEdge)}
    assert edges == {
        ("job:parent-1", "job:job-r", "parent"),
        ("workflow:wf-7", "job:job-r", "member"),
        ("artifact:s3://raw/dr1/g.fits", "job:job-r", "used"),
        ("job:job-r", "artifact:s3://out/job-r/coadd-g.fits", "produced"),
    }
