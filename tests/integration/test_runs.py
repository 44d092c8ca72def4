"""Runs and their members, and how two runs differ, on the real engine: two runs of the First Provenance
Challenge workflow whose differences are known by construction (one parameter, one input's checksum, one status,
one extra member), with run ids, job ids and URIs holding "/", spaces and unicode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from jobprov.cli.main import cli
from jobprov.errors import UnknownNameError
from jobprov.query.api import create_app
from jobprov.query.runs import compare_runs, run
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Annotation,
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
from tests.integration.conftest import _CHDB_STORE
from tests.integration.processing import ListDeadLetters

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
PRODUCER = Producer("test", "0", "p")
RUN_A = "pc/run 1 é"
RUN_B = "pc/run 2 β"


def _workflow(run_id: str, offset: int, model_2: str, checksum_2: str, softmean: str, convert: bool) -> list[Event]:
    """The run's own job, then align (x2) -> reslice -> softmean (-> convert), chained through their files."""
    events: list[Event] = []
    seq = 0

    def job(job_id: str, payloads: list[Any]) -> None:
        nonlocal seq
        for payload in payloads:
            seq += 1
            t = T0 + timedelta(hours=offset, minutes=seq)
            events.append(Event(f"{job_id}-{seq}", job_id, type(payload).__name__, ms(t), ms(t), PRODUCER, seq,
                                payload=payload))  # fmt: skip

    started = JobStarted(host="node ü", os="linux", kernel="6.1", cwd="/w")
    out = f"file:///w/{run_id}"
    job(run_id, [JobSubmitted(name="challenge", kind="workflow"), started])
    members = [
        ("align1", "align_warp", {"model": "12"}, [("file:///in/anatomy1.img", "c1")], [f"{out}/warp1"], "succeeded"),
        ("align2", "align_warp", {"model": model_2}, [("file:///in/anatomy2.img", checksum_2)], [f"{out}/warp2"],
         "succeeded"),
        ("reslice", "reslice", {}, [(f"{out}/warp1", None), (f"{out}/warp2", None)], [f"{out}/resliced"],
         "succeeded"),
        (None, "softmean", {}, [(f"{out}/resliced", None)], [f"{out}/atlas.img"], softmean),
    ]  # fmt: skip
    if convert:
        members.append((None, "convert", {"format": "gif"}, [(f"{out}/atlas.img", None)], [f"{out}/atlas.gif"],
                        "succeeded"))  # fmt: skip
    for node, program, params, inputs, outputs, status in members:
        job(f"{run_id}/{node or program}", [
            JobSubmitted(name=program, kind="task", parent_job_id=run_id, dag_node=node), started,
            ProvenanceDeclared(values=params, software={"numpy": "2.0.1"}),
            *(ArtifactUsed(uri=uri, checksum=checksum) for uri, checksum in inputs),
            *(ArtifactProduced(uri=uri, checksum=f"sum-{uri.rsplit('/', 1)[1]}") for uri in outputs),
            JobFinished(status=status, exit_code=0 if status == "succeeded" else 1),
        ])  # fmt: skip
    job(run_id, [JobFinished(status=softmean)])
    return events


@pytest.fixture
def loaded(store: Any) -> Store:
    events = _workflow(RUN_A, 0, "12", "c2", "succeeded", convert=False)
    events += _workflow(RUN_B, 1, "9", "c2-new", "failed", convert=True)
    t = T0 + timedelta(days=1)
    events.append(Event("note-1", RUN_B, "Annotation", ms(t), ms(t), PRODUCER, 999, payload=Annotation(key="quality",
                        value="bad", author="reviewer")))  # fmt: skip
    sink = ClickHouseSink(store, store.jobprov_database)
    processor = Processor(sink, ListDeadLetters(), FoldContext())
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(events)])
    return Store(store, store.jobprov_database)


EXPECTED = [
    ("parameter", "align2", "model", "12", "9"),
    ("input", "align2", "file:///in/anatomy2.img", "c2", "c2-new"),
    ("structure", "convert#1", "member", None, "convert"),
    ("status", "softmean#1", "status", "succeeded", "failed"),
    ("structure", "convert#1", "dataflow softmean#1 → convert#1", None, "softmean#1 → convert#1"),
]


def test_a_run_lists_its_members_by_what_they_did(loaded: Store) -> None:
    found = run(loaded, RUN_A)
    assert (found["name"], found["status"]) == ("challenge", "succeeded")
    members = {m["place"]: m for m in found["members"]}
    assert list(members) == ["align1", "align2", "reslice", "softmean#1"]
    assert members["align2"]["program"] == "align_warp" and members["align2"]["parameters"] == {"model": "12"}
    assert members["align2"]["inputs"] == [{"uri": "file:///in/anatomy2.img", "checksum": "c2", "role": None}]
    assert [o["uri"] for o in members["softmean#1"]["outputs"]] == [f"file:///w/{RUN_A}/atlas.img"]
    assert members["reslice"]["job_id"] == f"{RUN_A}/reslice"
    with pytest.raises(UnknownNameError, match="no run"):
        run(loaded, "pc/none")


def test_two_runs_differ_in_parameters_inputs_status_and_structure_not_ids(loaded: Store) -> None:
    rows = compare_runs(loaded, RUN_A, RUN_B)
    assert [(r["aspect"], r["member"], r["item"], r["a"], r["b"]) for r in rows] == EXPECTED
    assert compare_runs(loaded, RUN_A, RUN_A) == []


def test_runs_over_http_and_the_cli(loaded: Store) -> None:
    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/runs/pc%2Frun%201%20%C3%A9").json()
    assert [m["place"] for m in body["members"]] == ["align1", "align2", "reslice", "softmean#1"]
    assert client.get("/api/v1/runs/pc%2Fnone").status_code == 404
    diff = client.get("/api/v1/compare-runs", params={"a": RUN_A, "b": RUN_B}).json()
    assert [(r["aspect"], r["member"], r["item"], r["a"], r["b"]) for r in diff] == EXPECTED

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    base = ["query", "--store", f"chdb://{_CHDB_STORE[0]}"]
    result = CliRunner().invoke(cli, [*base, "run", RUN_B], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["place", "program", "status"]
    assert lines[2].split()[:3] == ["align2", "align_warp", "succeeded"] and "model=9" in lines[2]
    assert "file:///in/anatomy2.img (c2-new)" in lines[2]
    result = CliRunner().invoke(cli, [*base, "compare-runs", RUN_A, RUN_B, "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"aspect,member,item,{RUN_A},{RUN_B}"
    assert result.output.splitlines()[1] == "parameter,align2,model,12,9"
    result = CliRunner().invoke(cli, [*base, "compare-runs", RUN_A, RUN_B, "--format", "json"], env=env)
    assert len(json.loads(result.output)) == len(EXPECTED)
    result = CliRunner().invoke(cli, [*base, "run", "pc/none"], env=env)
    assert result.exit_code == 2 and "no run" in result.output


def test_jobs_grouped_count_each_status(loaded: Store) -> None:
    from jobprov.query.attributes import group_jobs

    found = group_jobs(loaded, ["job.kind"])
    assert [(g["group"], g["total"], g["statuses"]) for g in found] == [
        ({"job.kind": "task"}, 9, {"failed": 1, "succeeded": 8}),
        ({"job.kind": "workflow"}, 2, {"failed": 1, "succeeded": 1}),
    ]
    by_program = group_jobs(loaded, ["sys.job.name"], [f"job.parent_job_id = {RUN_B}"])
    assert {g["group"]["sys.job.name"]: g["statuses"] for g in by_program}["softmean"] == {"failed": 1}
    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/job-groups", params={"key": "job.kind"}).json()
    assert body[0] == {"group": {"job.kind": "task"}, "total": 9, "statuses": {"failed": 1, "succeeded": 8}}


def test_an_artifact_shows_its_producers_consumers_and_revisions(loaded: Store) -> None:
    from jobprov.query.artifacts import artifact

    raw = artifact(loaded, "file:///in/anatomy2.img")
    assert raw["producers"] == []
    assert [(c["job_id"], c["checksum"]) for c in raw["consumers"]] == [(f"{RUN_A}/align2", "c2"),
                                                                        (f"{RUN_B}/align2", "c2-new")]  # fmt: skip
    assert [(r["checksum"], r["jobs"]) for r in raw["revisions"]] == [("c2", 1), ("c2-new", 1)]
    atlas = artifact(loaded, f"file:///w/{RUN_B}/atlas.img")
    assert [p["job_id"] for p in atlas["producers"]] == [f"{RUN_B}/softmean"]
    assert [c["job_id"] for c in atlas["consumers"]] == [f"{RUN_B}/convert"]
    assert atlas["revisions"][0]["checksum"] == "sum-atlas.img" and atlas["revisions"][0]["jobs"] == 1
    with pytest.raises(UnknownNameError, match="no artifact"):
        artifact(loaded, "file:///nowhere")

    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/artifact", params={"uri": f"file:///w/{RUN_B}/atlas.img"}).json()
    assert body["producers"][0]["job_id"] == f"{RUN_B}/softmean"
    assert client.get("/api/v1/artifact", params={"uri": "file:///nowhere"}).status_code == 404
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "artifact",
                                      "file:///in/anatomy2.img"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "c2-new" in result.output and f"{RUN_B}/align2" in result.output


def test_compare_names_inputs_used_with_another_checksum(loaded: Store) -> None:
    from jobprov.query.series import compare_jobs

    a, b = f"{RUN_A}/align2", f"{RUN_B}/align2"
    found = [(c.namespace, c.key, c.before, c.after) for c in compare_jobs(loaded, a, b)]
    assert found == [("parameter", "model", "12", "9"), ("input", "input:file:///in/anatomy2.img", "c2", "c2-new")]
    assert compare_jobs(loaded, f"{RUN_A}/align1", f"{RUN_B}/align1") == []  # same input, same checksum
    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/compare", params={"a": a, "b": b, "namespace": "input"}).json()
    assert [(c["key"], c["before"], c["after"]) for c in body] == [("input:file:///in/anatomy2.img", "c2", "c2-new")]
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "compare", a, b, "--namespace",
                                      "input", "--format", "csv"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == "input,input:file:///in/anatomy2.img,c2,c2-new"


def test_runs_side_by_side_with_chosen_parameters_and_annotations(loaded: Store) -> None:
    from jobprov.query.runs import runs_table

    assert runs_table(loaded, [RUN_A, RUN_B], ["model", "param.format"], ["quality"]) == [
        {"run": RUN_A, "status": "succeeded", "members": 4, "model": "12", "param.format": None, "ann.quality": None},
        {"run": RUN_B, "status": "failed", "members": 5, "model": "12, 9", "param.format": "gif",
         "ann.quality": "bad"},
    ]  # fmt: skip
    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/runs", params=[("run", RUN_B), ("param", "model"), ("annotation", "quality")]).json()
    assert body == [{"run": RUN_B, "status": "failed", "members": 5, "model": "12, 9", "ann.quality": "bad"}]
    assert client.get("/api/v1/runs", params=[("run", "pc/none")]).status_code == 404
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    args = ["runs", RUN_A, RUN_B, "--param", "model", "--annotation", "quality", "--format", "csv"]
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", *args], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["run,status,members,model,ann.quality", f"{RUN_A},succeeded,4,12,",
                                          f'{RUN_B},failed,5,"12, 9",bad']  # fmt: skip


def test_the_attribute_language_globs_tests_presence_and_compares_numbers(loaded: Store) -> None:
    from jobprov.query.attributes import find_artifacts, find_jobs

    assert find_jobs(loaded, ["param.format exists"]) == [f"{RUN_B}/convert"]
    assert find_jobs(loaded, ["param.model > 10"]) == [f"{RUN_A}/align1", f"{RUN_A}/align2", f"{RUN_B}/align1"]
    assert find_jobs(loaded, ["param.model < 10"]) == [f"{RUN_B}/align2"]  # as text, "9" > "10"
    assert find_jobs(loaded, ["ann.quality exists"]) == [RUN_B]
    assert find_jobs(loaded, ["ann.quality missing", "job.kind = workflow"]) == [RUN_A]
    assert find_jobs(loaded, ["job.dag_node missing", "job.name glob soft*"]) == [f"{RUN_A}/softmean",
                                                                                 f"{RUN_B}/softmean"]  # fmt: skip
    # The run ids hold "/": their outputs lie two segments below /w, beyond one "*" but not "**".
    assert find_artifacts(loaded, ["uri glob file:///w/*/atlas.*"]) == []
    assert find_artifacts(loaded, ["uri glob file:///w/pc/*/atlas.gif"]) == [f"file:///w/{RUN_B}/atlas.gif"]
    assert find_artifacts(loaded, ["uri glob file:///w/**/atlas.*"]) == [
        f"file:///w/{RUN_A}/atlas.img", f"file:///w/{RUN_B}/atlas.gif", f"file:///w/{RUN_B}/atlas.img"]  # fmt: skip
    assert find_artifacts(loaded, ["uri glob file:///in/anatomy?.img", "checksum exists"]) == [
        "file:///in/anatomy1.img", "file:///in/anatomy2.img"]  # fmt: skip
    client = TestClient(create_app(loaded), base_url="http://localhost")
    found = client.get("/api/v1/jobs", params={"where": ["param.model >= 12", "job.parent_job_id = " + RUN_B]})
    assert found.json() == [f"{RUN_B}/align1"]
    assert client.get("/api/v1/jobs", params={"where": "param.model exists 12"}).status_code == 400
