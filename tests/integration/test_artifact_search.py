"""Attribute search returns artifacts with everything known about them: found by artifact annotation keys, URI
prefix and glob, and checksum, each with its producers, consumers, revisions and annotations; on the real engine
through Python, the CLI (on the store and through a running API) and HTTP, with URIs holding "/", spaces and
unicode, and an artifact known only by an annotation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from jobprov.cli.main import cli
from jobprov.query.api import create_app
from jobprov.query.artifacts import search
from jobprov.query.backend import HttpBackend
from jobprov.query.store import Store
from jobprov.schemas import models as m
from jobprov.schemas.binary import timestamp_millis as ms
from tests.integration.conftest import _CHDB_STORE
from tests.integration.processing import fold_into
from tests.integration.test_attempts import api  # noqa: F401  (the API served over a socket, on `loaded` below)

T0 = datetime(2026, 5, 1, tzinfo=UTC)
P = m.Producer("test", "0", "p")
FIRST = "s3://b/out dir/é-1.fits"
SECOND = "s3://b/out dir/é-2.fits"
ALONE = "file:///notes/only annotated ü.txt"  # no job used or produced it
WRITER, READER = "pc/w 1", "pc/w 2"


def _events() -> list[m.Event]:
    def at(n: int, job: str, payload: Any) -> m.Event:
        t = T0 + timedelta(minutes=n)
        return m.Event(f"e{n}", job, type(payload).__name__, ms(t), ms(t), P, n, payload=payload)

    def annotate(n: int, uri: str, key: str, value: str) -> m.Event:
        return at(n, f"artifact:{uri}", m.Annotation(key=key, value=value, author="rev", target_type="artifact",
                                                   target=uri))  # fmt: skip

    return [
        at(1, WRITER, m.JobSubmitted(name="warp", kind="pipeline")),
        at(2, WRITER, m.ArtifactProduced(uri=FIRST, checksum="sha256:aa", size_bytes=10)),
        at(3, WRITER, m.JobFinished(status="succeeded")),
        at(4, READER, m.JobSubmitted(name="mean", kind="pipeline")),
        at(5, READER, m.ArtifactUsed(uri=FIRST, checksum="sha256:aa")),
        at(6, READER, m.ArtifactProduced(uri=SECOND, checksum="sha256:bb")),
        at(7, READER, m.JobFinished(status="succeeded")),
        annotate(8, FIRST, "quality", "bad"),
        annotate(9, FIRST, "note", "seen twice ü"),
        annotate(10, ALONE, "reviewed", "yes"),
    ]


@pytest.fixture
def loaded(store: Any) -> Store:
    found: Store = fold_into(store, _events())
    return found


def _summary(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (a["uri"], [p["job_id"] for p in a["producers"]], [c["job_id"] for c in a["consumers"]],
         [r["checksum"] for r in a["revisions"]], [(n["key"], n["value"]) for n in a["annotations"]])
        for a in found
    ]  # fmt: skip


EXPECTED = {
    "ann.quality = bad": [(FIRST, [WRITER], [READER], ["sha256:aa"], [("quality", "bad"), ("note", "seen twice ü")])],
    "uri glob s3://b/out dir/*.fits": [
        (FIRST, [WRITER], [READER], ["sha256:aa"], [("quality", "bad"), ("note", "seen twice ü")]),
        (SECOND, [READER], [], ["sha256:bb"], []),
    ],
    "uri ~ s3://b/out dir/é-2": [(SECOND, [READER], [], ["sha256:bb"], [])],
    "checksum = sha256:bb": [(SECOND, [READER], [], ["sha256:bb"], [])],
    "ann.reviewed exists": [(ALONE, [], [], [], [("reviewed", "yes")])],
    "uri glob **ü.txt": [(ALONE, [], [], [], [("reviewed", "yes")])],
    "ann.quality = good": [],
}


@pytest.mark.parametrize("where", list(EXPECTED))
def test_search_returns_each_artifact_with_its_jobs_and_annotations(loaded: Store, where: str) -> None:
    assert _summary(search(loaded, [where])) == EXPECTED[where]


def test_groups_and_relations_narrow_the_search(loaded: Store) -> None:
    assert _summary(search(loaded, ["uri ~ s3://", "relation = used"]))[0][0] == FIRST
    assert [a["uri"] for a in search(loaded, ["job.name = mean | ann.reviewed = yes"])] == [ALONE, FIRST, SECOND]
    assert search(loaded, ["uri ~ s3://"], limit=1)[0]["uri"] == FIRST
    (first,) = search(loaded, ["ann.quality = bad"])
    producer = first["producers"][0]
    assert (producer["checksum"], producer["size_bytes"], producer["time"]) == (
        "sha256:aa",
        10,
        T0 + timedelta(2 / 1440),
    )


def test_http_answers_the_same_documents(loaded: Store) -> None:
    client = TestClient(create_app(loaded), base_url="http://localhost")
    for where, expected in EXPECTED.items():
        response = client.get("/api/v1/artifacts", params={"where": where})
        assert response.status_code == 200, response.text
        assert _summary(response.json()) == expected
    bad = client.get("/api/v1/artifacts", params={"where": "colour = blue"})
    assert bad.status_code == 400 and "unknown artifact attribute 'colour'" in bad.json()["detail"]
    assert client.get("/api/v1/artifacts", params={"where": "uri ~ s3://", "limit": 0}).status_code == 422


def test_the_cli_finds_artifacts_on_the_store(loaded: Store) -> None:
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    store = ["query", "--store", f"chdb://{_CHDB_STORE[0]}"]
    runner = CliRunner()
    as_json = runner.invoke(cli, [*store, "find", "--artifacts", "--where", "ann.quality = bad", "--format", "json"],
                            env=env)  # fmt: skip
    assert as_json.exit_code == 0, as_json.output
    assert _summary(json.loads(as_json.output)) == EXPECTED["ann.quality = bad"]
    table = runner.invoke(cli, [*store, "find", "--artifacts", "--where", "uri glob s3://b/out dir/*.fits",
                                "--format", "csv"], env=env)  # fmt: skip
    assert table.exit_code == 0, table.output
    assert table.output.splitlines() == [
        "uri,checksums,producers,consumers,annotations",
        f"{FIRST},sha256:aa,{WRITER},{READER},quality=bad; note=seen twice ü",
        f"{SECOND},sha256:bb,{READER},,",
    ]
    bad = runner.invoke(cli, [*store, "find", "--artifacts", "--where", "uri ~ x", "--limit", "0"], env=env)
    assert bad.exit_code == 2 and "'--limit'" in bad.output


def test_the_cli_and_the_http_backend_ask_a_running_api(api: str) -> None:  # noqa: F811
    assert _summary(HttpBackend(api).find_artifacts(["ann.reviewed exists"])) == EXPECTED["ann.reviewed exists"]
    result = CliRunner().invoke(cli, ["query", "--api", api, "find", "--artifacts", "--where", "checksum = sha256:bb"])
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split() == ["uri", "checksums", "producers", "consumers", "annotations"]
    assert row.startswith(SECOND) and "sha256:bb" in row and READER in row
