"""Lineage queries on the real engine over a small workflow: align_warp -> reslice -> softmean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobprov.errors import QueryError
from jobprov.query.lineage import ancestors, descendants, producers
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    ArtifactProduced,
    ArtifactUsed,
    Event,
    JobFinished,
    JobSubmitted,
    Producer,
    ProvenanceDeclared,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.processing import ListDeadLetters

T0 = datetime(2026, 2, 1, tzinfo=UTC)
P = Producer("test", "0", "p")

# job: (program, inputs, outputs, parent)
WORKFLOW = {
    "a1": ("align_warp", ["file:///raw/anatomy1.img", "file:///raw/reference.img"], ["file:///w/warp1"], None),
    "r1": ("reslice", ["file:///w/warp1"], ["file:///w/resliced1"], "a1"),
    "s1": ("softmean", ["file:///w/resliced1"], ["file:///w/atlas.img"], None),
    "c1": ("convert", ["file:///w/atlas.img"], ["file:///w/atlas.gif"], None),
}


def _events() -> list[Event]:
    out: list[Event] = []
    for n, (job, (program, inputs, outputs, parent)) in enumerate(WORKFLOW.items()):
        payloads: list[Any] = [
            JobSubmitted(name=program, kind="pipeline", parent_job_id=parent, workflow_id="atlas-wf"),
            ProvenanceDeclared(values={"program": program, "model": "12" if program == "align_warp" else ""}),
            *[ArtifactUsed(uri=u) for u in inputs],
            *[ArtifactProduced(uri=u) for u in outputs],
            JobFinished(status="succeeded"),
        ]
        for seq, payload in enumerate(payloads, 1):
            t = T0 + timedelta(hours=n, seconds=seq)
            out.append(Event(f"{job}-{seq}", job, type(payload).__name__, ms(t), ms(t), P, seq, payload=payload))
    return out


@pytest.fixture
def graph(store: Any) -> Store:
    processor = Processor(ClickHouseSink(store, store.jobprov_database), ListDeadLetters(), FoldContext())
    processor.process_batch([RawEvent(encode_event(e), "t", 0, i) for i, e in enumerate(_events())])
    return Store(store, store.jobprov_database)


def test_ancestors_of_an_artifact_walk_back_to_the_raw_inputs(graph: Store) -> None:
    steps = ancestors(graph, "file:///w/atlas.gif")
    nodes = [(s.depth, s.node) for s in steps]
    assert nodes[:2] == [(1, "job:c1"), (2, "artifact:file:///w/atlas.img")]
    reached = {s.node for s in steps}
    assert {"job:s1", "job:r1", "job:a1", "artifact:file:///raw/anatomy1.img"} <= reached
    assert {s.via for s in steps} == {"used", "produced"}, "data flow only: no parent, no workflow"
    # atlas.gif <- c1 <- atlas.img <- s1 <- resliced1 <- r1 <- warp1 <- a1
    assert next(s for s in steps if s.node == "job:r1").depth == 5
    assert next(s for s in steps if s.node == "job:a1").depth == 7, "through the warp r1 used"


def test_containment_is_followed_on_request(graph: Store) -> None:
    steps = ancestors(graph, "file:///w/atlas.gif", containment=True)
    assert "workflow:atlas-wf" in {s.node for s in steps}
    assert next(s for s in steps if s.node == "job:a1").depth == 6, "r1's parent, one level above r1"
    child = descendants(graph, "job:a1", depth=1, containment=True)
    assert {(s.via, s.node) for s in child} == {("produced", "artifact:file:///w/warp1"), ("parent", "job:r1")}


def test_depth_limit_and_stop_condition(graph: Store) -> None:
    near = ancestors(graph, "file:///w/atlas.gif", depth=2)
    assert {s.node for s in near} == {"job:c1", "artifact:file:///w/atlas.img"}
    stopped = ancestors(graph, "file:///w/atlas.gif", depth=20, stop_at={"program": "softmean"})
    reached = {s.node for s in stopped}
    assert "job:s1" in reached, "the matching job is included"
    assert "job:r1" not in reached and "job:a1" not in reached, "and nothing beyond it"
    with pytest.raises(QueryError, match="depth"):
        ancestors(graph, "job:c1", depth=0)


def test_descendants_and_producers(graph: Store) -> None:
    down = descendants(graph, "file:///raw/anatomy1.img")
    reached = [s.node for s in down]
    assert reached[0] == "job:a1"
    assert reached.index("artifact:file:///w/atlas.gif") > reached.index("job:s1")
    assert "job:r1" in reached  # through the produced warp
    assert producers(graph, "file:///w/atlas.img") == ["s1"]
    child = descendants(graph, "job:a1", depth=1)
    assert {(s.via, s.node) for s in child} == {("produced", "artifact:file:///w/warp1")}


def test_lineage_over_cli_and_http(graph: Store) -> None:
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from tests.integration.conftest import _CHDB_STORE

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": graph.database}
    result = CliRunner().invoke(
        cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "lineage", "a1", "--down", "--depth", "1"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "artifact:file:///w/warp1" in result.output and "job:r1" not in result.output
    result = CliRunner().invoke(
        cli,
        ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "lineage", "a1", "--down", "--depth", "1", "--containment"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "parent" in result.output and "job:r1" in result.output
    client = TestClient(create_app(graph), base_url="http://localhost")
    down = client.get("/api/v1/lineage", params={"ref": "a1", "direction": "down", "depth": 1}).json()
    assert [s["node"] for s in down] == ["artifact:file:///w/warp1"]
    down = client.get("/api/v1/lineage", params={"ref": "a1", "direction": "down", "depth": 1, "containment": True})
    assert sorted(s["node"] for s in down.json()) == ["artifact:file:///w/warp1", "job:r1"]
    up = client.get("/api/v1/lineage", params={"ref": "file:///w/atlas.gif", "stop_at": "program=softmean"}).json()
    assert "job:s1" in {s["node"] for s in up} and "job:a1" not in {s["node"] for s in up}
    assert client.get("/api/v1/lineage", params={"ref": "c1", "direction": "sideways"}).status_code == 422


def test_outputs_of_softmean_preceded_by_align_warp_model_12(graph: Store) -> None:
    from jobprov.query.lineage import outputs_preceded_by

    found = outputs_preceded_by(graph, ["job.name = softmean"], ["job.name = align_warp", "prov.model = 12"])
    assert found == {"s1": ["file:///w/atlas.img"]}
    assert outputs_preceded_by(graph, ["job.name = softmean"], ["job.name = align_warp", "prov.model = 9"]) == {}
    assert outputs_preceded_by(graph, ["job.name = align_warp"], ["job.name = softmean"]) == {}, "not upstream"


def test_outputs_preceded_by_over_cli_and_http(graph: Store) -> None:
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from tests.integration.conftest import _CHDB_STORE

    client = TestClient(create_app(graph), base_url="http://localhost")
    params = [("where", "job.name = softmean | job.name = convert"), ("ancestor", "job.name = align_warp"),
              ("ancestor", "param.model = 12")]  # fmt: skip
    assert client.get("/api/v1/lineage/outputs", params=params).json() == {
        "c1": ["file:///w/atlas.gif"], "s1": ["file:///w/atlas.img"]}  # fmt: skip
    assert client.get("/api/v1/lineage/outputs", params=params[:1]).status_code == 422
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": graph.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "outputs", "--where",
                                      "job.name = softmean", "--ancestor", "job.name = align_warp", "--ancestor",
                                      "param.model = 12", "--format", "csv"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["job_id,uri", "s1,file:///w/atlas.img"]


def test_artifacts_by_attribute(graph: Store) -> None:
    from jobprov.query.attributes import find_artifacts

    assert find_artifacts(graph, ["relation = produced", "job.name = softmean | job.name = convert"]) == [
        "file:///w/atlas.gif",
        "file:///w/atlas.img",
    ]
    assert find_artifacts(graph, ["uri ~ file:///raw/"]) == ["file:///raw/anatomy1.img", "file:///raw/reference.img"]


def test_find_over_cli_and_http(graph: Store) -> None:
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from tests.integration.conftest import _CHDB_STORE

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": graph.database}
    result = CliRunner().invoke(
        cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "find", "--where", "prov.model = 12"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["job_id", "a1"]
    client = TestClient(create_app(graph), base_url="http://localhost")
    assert client.get("/api/v1/jobs", params={"where": ["job.name = reslice | job.name = convert"]}).json() == [
        "c1",
        "r1",
    ]
    assert client.get("/api/v1/artifacts", params={"where": "role = nothing"}).json() == []
    bad = client.get("/api/v1/jobs", params={"where": "nonsense"})
    assert bad.status_code == 400 and "cannot read" in bad.json()["detail"]
