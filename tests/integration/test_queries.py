"""The query layer on the real engine, over a generated campaign whose answers are known by construction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobprov.errors import QueryError
from jobprov.query.backend import LocalBackend
from jobprov.query.jobs import job_detail, status_counts
from jobprov.query.lines import Point, iso_millis
from jobprov.query.series import baseline, compare_jobs, regressions, series, which_bucket
from jobprov.query.store import Store, to_plain, to_utc
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    StepFinished,
    StepStarted,
)
from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.processing import ListDeadLetters

NIGHTS = 12
UPGRADE = 7  # from this night on numpy is 2.0.1 and AM1 on hsc is 1.5 higher
T0 = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
BASE = {"hsc": 10.0, "cfht": 14.0}
PRODUCER = Producer("test", "0", "p")


def am1(night: int, dataset: str, band: str) -> float:
    """Deterministic small noise, no randomness: the expected answers follow from this function."""
    noise = ((night * 7 + len(band) * 3 + len(dataset)) % 5 - 2) * 0.05
    return BASE[dataset] + (1.5 if dataset == "hsc" and night >= UPGRADE else 0.0) + noise


def job_id(night: int, dataset: str, band: str) -> str:
    return f"n{night:02d}-{dataset}-{band}"


def campaign() -> list[Event]:
    events: list[Event] = []
    for night in range(NIGHTS):
        numpy = "2.0.1" if night >= UPGRADE else "1.26.4"
        for dataset in ("hsc", "cfht"):
            for band in ("r", "all"):
                jid = job_id(night, dataset, band)
                start = T0 + timedelta(days=night)
                payloads: list[Any] = [
                    JobSubmitted(name="validate_drp", kind="ci"),
                    JobStarted(host="ci-runner-1", os="linux", kernel="6.1", cwd="/w"),
                    ProvenanceDeclared(values={"dataset": dataset, "band": band}, software={"numpy": numpy}),
                    ArtifactUsed(uri=f"butler://{dataset}/raw"),
                    StepStarted(name="measure"),
                    MetricMeasured(name="AM1", value=am1(night, dataset, band), unit="mas"),
                    StepFinished(name="measure", status="succeeded"),
                    ArtifactProduced(uri=f"file:///out/{jid}.parq"),
                    JobFinished(status="succeeded", exit_code=0),
                ]
                for seq, payload in enumerate(payloads, 1):
                    t = start + timedelta(minutes=seq)
                    events.append(Event(f"{jid}-{seq}", jid, type(payload).__name__, ms(t), ms(t), PRODUCER, seq,
                                        payload=payload))  # fmt: skip
    bad = job_id(3, "cfht", "r")
    t = T0 + timedelta(days=20)
    events.append(
        Event("bad-1", bad, "Annotation", ms(t), ms(t), PRODUCER, 99, payload=Annotation(key="quality", value="bad"))
    )
    return events


@pytest.fixture
def loaded(store: Any) -> Store:
    sink = ClickHouseSink(store, store.jobprov_database)
    processor = Processor(sink, ListDeadLetters(), FoldContext())
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(campaign())])
    return Store(store, store.jobprov_database)


def test_series_has_one_line_per_bucket_in_time_order(loaded: Store) -> None:
    lines = series(loaded, "AM1")
    assert len(lines) == 4
    by_label = {(line.label["dataset"], line.label["band"]): line for line in lines}
    assert set(by_label) == {("hsc", "r"), ("hsc", "all"), ("cfht", "r"), ("cfht", "all")}
    hsc_r = by_label[("hsc", "r")]
    assert [p.value for p in hsc_r.points] == pytest.approx([am1(n, "hsc", "r") for n in range(NIGHTS)])
    assert [p.job_id for p in hsc_r.points] == [job_id(n, "hsc", "r") for n in range(NIGHTS)]
    assert hsc_r.unit == "mas"
    assert hsc_r.points[0].time == T0 + timedelta(minutes=6)


def test_series_grouped_filtered_windowed_and_without_bad_jobs(loaded: Store) -> None:
    grouped = series(loaded, "AM1", group_by=["dataset"])
    assert sorted((line.label["dataset"], len(line.points)) for line in grouped) == [("cfht", 24), ("hsc", 24)]
    only_r = series(loaded, "AM1", filters={"band": "r"})
    assert sorted(line.label["dataset"] for line in only_r) == ["cfht", "hsc"]
    window = series(loaded, "AM1", since=T0 + timedelta(days=2), until=T0 + timedelta(days=5))
    assert all(len(line.points) == 3 for line in window)
    clean = series(loaded, "AM1", filters={"band": "r", "dataset": "cfht"}, exclude_annotated={"quality": "bad"})
    assert [p.job_id for p in clean[0].points] == [job_id(n, "cfht", "r") for n in range(NIGHTS) if n != 3]


def test_columnar_lines_hold_the_same_points_as_the_rows(loaded: Store) -> None:
    """The lines' columns against the plain per-row reading: one aware-datetime Point per stored row."""
    rows = loaded.rows(
        "SELECT bucket, bucket_keys, unit, time, value, job_id, event_id FROM {db}.metric_points FINAL "
        "WHERE metric = 'AM1' ORDER BY bucket, time, job_id"
    )
    expected: dict[str, tuple[dict[str, str], str | None, list[Point]]] = {}
    for bucket, keys, unit, time, value, job, event in rows:
        expected.setdefault(bucket, (dict(keys), unit, []))[2].append(Point(to_utc(time) or time, value, job, event))
    lines = series(loaded, "AM1")
    assert {line.bucket: (line.label, line.unit, line.points) for line in lines} == expected
    for line in lines:
        assert len(line) == len(line.values) == len(line.job_ids) == len(line.event_ids) == NIGHTS
        assert [iso_millis(ms) for ms in line.times_ms] == [to_plain(p.time) for p in line.points]
        (alone,) = series(loaded, "AM1", bucket=line.bucket)
        assert alone == line, "one bucket asked alone: the same line"
    documents = LocalBackend(loaded).series("AM1")
    assert documents == [line.document() for line in lines]
    assert documents[0]["times_ms"][0] == int(lines[0].points[0].time.timestamp() * 1000)
    assert series(loaded, "AM1", bucket="no-such-bucket") == []


def test_which_bucket_and_its_baseline(loaded: Store) -> None:
    bucket, keys = which_bucket("AM1", {"dataset": "hsc", "band": "r", "software.numpy": "9"})
    assert keys == {"dataset": "hsc", "band": "r", "config.hash": ""}
    (line,) = [line for line in series(loaded, "AM1") if line.label == keys]
    assert line.bucket == bucket
    stats = baseline(loaded, "AM1", bucket, last=5)
    recent = [am1(n, "hsc", "r") for n in range(NIGHTS - 5, NIGHTS)]
    assert stats.count == 5
    assert stats.mean == pytest.approx(sum(recent) / 5)
    assert stats.minimum == pytest.approx(min(recent))
    assert stats.last_time == T0 + timedelta(days=NIGHTS - 1, minutes=6)


def test_compare_two_runs_names_what_changed(loaded: Store) -> None:
    changes = compare_jobs(loaded, job_id(UPGRADE - 1, "hsc", "r"), job_id(UPGRADE, "hsc", "r"), ["dataset", "band"])
    assert [str(c) for c in changes] == ["software.numpy: 1.26.4 → 2.0.1"]
    assert changes[0].in_bucket is False
    assert compare_jobs(loaded, job_id(1, "hsc", "r"), job_id(2, "hsc", "r")) == []
    with pytest.raises(QueryError, match="no provenance"):
        compare_jobs(loaded, "nope", job_id(1, "hsc", "r"))


def test_regressions_find_the_upgrade_on_hsc_only(loaded: Store) -> None:
    found = regressions(loaded, "AM1", window=6, k=4.0, min_points=4)
    onsets = [r for r in found if r.onset]
    assert sorted((r.label["dataset"], r.label["band"], r.point.job_id) for r in onsets) == [
        ("hsc", "all", job_id(UPGRADE, "hsc", "all")),
        ("hsc", "r", job_id(UPGRADE, "hsc", "r")),
    ]
    for r in onsets:
        assert [str(c) for c in r.changes] == ["software.numpy: 1.26.4 → 2.0.1"]
        assert r.deviation > 4
    assert not [r for r in found if r.label["dataset"] == "cfht"]


def test_job_detail_and_status_counts(loaded: Store) -> None:
    detail = job_detail(loaded, job_id(3, "cfht", "r"))
    assert detail["status"] == "succeeded"
    assert detail["provenance"]["dataset"] == "cfht"
    assert [s["name"] for s in detail["steps"]] == ["measure"]
    assert [(a["key_name"], a["value"]) for a in detail["annotations"]] == [("quality", "bad")]
    relations = sorted((e["relation"], e["src"], e["dst"]) for e in detail["lineage"])
    jid = job_id(3, "cfht", "r")
    assert relations == [("produced", f"job:{jid}", f"artifact:file:///out/{jid}.parq"),
                         ("used", "artifact:butler://cfht/raw", f"job:{jid}")]  # fmt: skip
    assert status_counts(loaded) == {"succeeded": NIGHTS * 4}
    with pytest.raises(QueryError, match="no job"):
        job_detail(loaded, "missing")


def test_bad_parameters_are_refused_before_any_sql(loaded: Store) -> None:
    with pytest.raises(QueryError, match="metric"):
        series(loaded, "")
    with pytest.raises(QueryError, match="at most"):
        series(loaded, "AM1", group_by=[f"k{i}" for i in range(9)])
    with pytest.raises(QueryError, match="last"):
        baseline(loaded, "AM1", "b", last=0)
    # Values travel as parameters: quotes in them are data, not SQL (a metric of that name, which is unknown).
    with pytest.raises(QueryError, match="unknown metric"):
        series(loaded, "AM1'; DROP TABLE x; --")
    assert len(series(loaded, "AM1")) == 4


def test_query_cli_answers_in_table_json_and_csv(loaded: Store) -> None:
    import json

    from click.testing import CliRunner

    from jobprov.cli.main import cli
    from tests.integration.conftest import _CHDB_STORE

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    base = ["query", "--store", f"chdb://{_CHDB_STORE[0]}"]
    runner = CliRunner()

    result = runner.invoke(cli, [*base, "regressions", "AM1", "--window", "6", "--min-points", "5"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.count("software.numpy: 1.26.4 → 2.0.1") == 2
    assert job_id(UPGRADE, "hsc", "r") in result.output

    result = runner.invoke(cli, [*base, "series", "AM1", "--filter", "dataset=hsc", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    lines = json.loads(result.output)
    assert sorted(line["label"]["band"] for line in lines) == ["all", "r"]

    result = runner.invoke(cli, [*base, "series", "AM1", "--group-by", "dataset", "--format", "csv"], env=env)
    assert result.output.splitlines()[0] == "label,bucket,time,value,unit,job_id"
    assert len(result.output.splitlines()) == 1 + NIGHTS * 4
    assert result.output.splitlines()[1].startswith(f"dataset=cfht,,{(T0 + timedelta(minutes=6)).isoformat()},")

    bucket, _ = which_bucket("AM1", {"dataset": "hsc", "band": "r"})
    result = runner.invoke(cli, [*base, "series", "AM1", "--bucket", bucket, "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert [row.split(",")[-1] for row in result.output.splitlines()[1:]] == [
        job_id(n, "hsc", "r") for n in range(NIGHTS)
    ]

    result = runner.invoke(
        cli, [*base, "compare", job_id(UPGRADE - 1, "cfht", "r"), job_id(UPGRADE, "cfht", "r")], env=env
    )
    assert "software.numpy" in result.output and "2.0.1" in result.output

    result = runner.invoke(cli, [*base, "bucket", "AM1", "dataset=cfht", "band=all", "--format", "json"], env=env)
    assert json.loads(result.output)["baseline"]["count"] == NIGHTS

    result = runner.invoke(cli, [*base, "series", "AM1", "--since", "yesterday"], env=env)
    assert result.exit_code == 2 and "--since" in result.output


def test_http_api_answers_and_refuses_bad_parameters(loaded: Store) -> None:
    from fastapi.testclient import TestClient

    from jobprov.query.api import create_app

    client = TestClient(create_app(loaded), base_url="http://localhost")
    assert client.get("/readyz").json()["status"] == "ready"
    lines = client.get("/api/v1/series/AM1", params={"filter": "dataset=hsc"}).json()
    assert sorted(line["label"]["band"] for line in lines) == ["all", "r"]
    assert all(len(line["times_ms"]) == len(line["values"]) == len(line["job_ids"]) == NIGHTS for line in lines)
    (one,) = client.get("/api/v1/series/AM1", params={"bucket": lines[0]["bucket"]}).json()
    assert one == lines[0]
    found = client.get("/api/v1/regressions/AM1", params={"window": 6, "min_points": 5}).json()
    assert sorted(r["point"]["job_id"] for r in found) == sorted(job_id(UPGRADE, "hsc", b) for b in ("r", "all"))
    assert found[0]["changes"][0]["key"] == "software.numpy"
    bucket = client.get("/api/v1/buckets/AM1", params={"provenance": ["dataset=cfht", "band=r"]}).json()
    assert bucket["baseline"]["count"] == NIGHTS
    changes = client.get("/api/v1/compare", params={"a": job_id(1, "hsc", "r"), "b": job_id(9, "hsc", "r")}).json()
    assert [c["key"] for c in changes] == ["software.numpy"]
    assert client.get(f"/api/v1/jobs/{job_id(2, 'hsc', 'all')}").json()["status"] == "succeeded"
    assert client.get("/api/v1/status").json() == {"succeeded": NIGHTS * 4}

    missing = client.get("/api/v1/jobs/nope")
    assert missing.status_code == 404 and "no job" in missing.json()["detail"]
    bad_pair = client.get("/api/v1/series/AM1", params={"filter": "no-equals-sign"})
    assert bad_pair.status_code == 422 and "KEY=VALUE" in bad_pair.json()["detail"]
    bad_window = client.get("/api/v1/regressions/AM1", params={"window": 1})
    assert bad_window.status_code == 422
    too_many = client.get("/api/v1/series/AM1", params={"group_by": [f"k{i}" for i in range(9)]})
    assert too_many.status_code == 400 and "at most" in too_many.json()["detail"]
    spec = client.get("/openapi.json").json()
    assert "/api/v1/series/{metric}" in spec["paths"]
    line_schema = spec["components"]["schemas"]["SeriesLine"]["properties"]
    assert set(line_schema) == {"label", "bucket", "unit", "times_ms", "values", "job_ids", "event_ids"}


def test_jobs_by_attribute_query(loaded: Store) -> None:
    from jobprov.query.attributes import find_jobs

    hsc_r = find_jobs(loaded, ["dataset = hsc", "band = r"])
    assert hsc_r == sorted(job_id(n, "hsc", "r") for n in range(NIGHTS))
    either = find_jobs(loaded, ["prov.dataset = cfht", "band = r | band = all", "software.numpy = 2.0.1"])
    assert len(either) == (NIGHTS - UPGRADE) * 2
    assert find_jobs(loaded, ["ann.quality = bad"]) == [job_id(3, "cfht", "r")]
    assert find_jobs(loaded, ["job.name ~ validate", "job.exit_code = 0", "job.attempts <= 1", "dataset = hsc",
                              "band = all"]) == sorted(job_id(n, "hsc", "all") for n in range(NIGHTS))  # fmt: skip
    # 2026-09-01 is a Tuesday (2): nights 4, 5 and 11 fall on a Saturday or a Sunday.
    weekend = find_jobs(loaded, ["time.dow >= 6", "dataset = hsc", "band = r"])
    assert weekend == [job_id(4, "hsc", "r"), job_id(5, "hsc", "r"), job_id(11, "hsc", "r")]
    assert find_jobs(loaded, ["time.date = 2026-09-03", "dataset = hsc", "band = r"]) == [job_id(2, "hsc", "r")]
    for bad, message in [
        (["dataset"], "cannot read"),
        (["job.colour = red"], "unknown job attribute"),
        (["time.week = 3"], "unknown time field"),
        (["job.exit_code > zero"], "not a number"),
    ]:
        with pytest.raises(QueryError, match=message):
            find_jobs(loaded, bad)


def test_provenance_namespaces_in_find_series_and_compare(loaded: Store) -> None:
    """Parameters (param.), context (ctx.) and collected facts (sys.) by name; bare keys keep working."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from jobprov.query.attributes import find_jobs
    from tests.integration.conftest import _CHDB_STORE

    r_jobs = find_jobs(loaded, ["band = r"])
    assert len(r_jobs) == NIGHTS * 2 and find_jobs(loaded, ["param.band = r"]) == r_jobs
    assert len(find_jobs(loaded, ["ctx.software.numpy = 2.0.1"])) == (NIGHTS - UPGRADE) * 4
    assert len(find_jobs(loaded, ["sys.host = ci-runner-1", "param.dataset = hsc"])) == NIGHTS * 2
    with pytest.raises(QueryError, match=r"write ctx\.software\.numpy"):
        find_jobs(loaded, ["param.software.numpy = 2.0.1"])
    with pytest.raises(QueryError, match=r"write sys\.host"):
        series(loaded, "AM1", filters={"ctx.host": "ci-runner-1"})

    named = series(loaded, "AM1", filters={"param.band": "r", "param.dataset": "cfht"})
    assert [p.job_id for p in named[0].points] == [p.job_id for p in series(loaded, "AM1", filters={
        "band": "r", "dataset": "cfht"})[0].points]  # fmt: skip
    grouped = series(loaded, "AM1", group_by=["param.dataset"])
    assert sorted(line.label["param.dataset"] for line in grouped) == ["cfht", "hsc"]

    a, b = job_id(1, "hsc", "r"), job_id(UPGRADE, "cfht", "r")
    every = compare_jobs(loaded, a, b)
    assert [(c.key, c.namespace) for c in every] == [("dataset", "parameter"), ("software.numpy", "context")]
    assert [(c.key, c.namespace) for c in compare_jobs(loaded, a, b, namespace="parameter")] == [
        ("dataset", "parameter")]  # fmt: skip
    assert [c.key for c in compare_jobs(loaded, a, b, namespace="context")] == ["software.numpy"]
    assert compare_jobs(loaded, a, b, namespace="collected") == []

    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/compare", params={"a": a, "b": b, "namespace": "parameter"}).json()
    assert body == [{"key": "dataset", "before": "hsc", "after": "cfht", "in_bucket": False, "namespace": "parameter"}]
    assert client.get("/api/v1/compare", params={"a": a, "b": b, "namespace": "params"}).status_code == 422
    found = client.get("/api/v1/jobs", params={"where": ["param.band = r", "ctx.software.numpy = 1.26.4"]}).json()
    assert len(found) == UPGRADE * 2
    assert client.get("/api/v1/jobs", params={"where": "param.host = x"}).status_code == 400
    lines = client.get("/api/v1/series/AM1", params={"group_by": "param.band"}).json()
    assert sorted(line["label"]["param.band"] for line in lines) == ["all", "r"]
    job = client.get(f"/api/v1/jobs/{a}").json()
    assert job["provenance_namespaces"]["band"] == "parameter" and job["provenance_names"]["host"] == "sys.host"

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    base = ["query", "--store", f"chdb://{_CHDB_STORE[0]}"]
    result = CliRunner().invoke(cli, [*base, "compare", a, b, "--namespace", "context", "--format", "csv"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"namespace,key,{a},{b}", "context,software.numpy,1.26.4,2.0.1"]
    result = CliRunner().invoke(cli, [*base, "find", "--where", "param.band = r", "--where", "param.dataset = hsc",
                                      "--format", "csv"], env=env)  # fmt: skip
    assert result.output.splitlines()[1:] == [job_id(n, "hsc", "r") for n in range(NIGHTS)]


def test_a_buckets_baseline_as_of_a_job_or_a_time(loaded: Store) -> None:
    """Only the points strictly before the job's (or the time), without jobs annotated bad, statistic named."""
    import json
    import statistics

    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from tests.integration.conftest import _CHDB_STORE

    backend = LocalBackend(loaded)
    found = backend.bucket("AM1", {"dataset": "hsc", "band": "r"}, as_of=job_id(UPGRADE, "hsc", "r"))["baseline"]
    before = [am1(n, "hsc", "r") for n in range(UPGRADE)]
    assert found["count"] == UPGRADE and found["median"] == pytest.approx(statistics.median(before))
    assert found["as_of_job"] == job_id(UPGRADE, "hsc", "r")
    assert found["before"] == (T0 + timedelta(days=UPGRADE, minutes=6)).isoformat()
    assert found["statistic"].startswith("median (level) and MAD (spread) of the last 50 points before")
    at_time = backend.bucket("AM1", {"dataset": "hsc", "band": "r"}, as_of=(T0 + timedelta(days=2)).isoformat())
    assert at_time["baseline"]["count"] == 2 and at_time["baseline"]["as_of_job"] is None
    clean = backend.bucket("AM1", {"dataset": "cfht", "band": "r"}, as_of=job_id(5, "cfht", "r"),
                           exclude_annotated={"quality": "bad"})["baseline"]  # fmt: skip
    assert clean["count"] == 4 and "leaving out jobs annotated quality=bad" in clean["statistic"]
    assert clean["median"] == pytest.approx(statistics.median(am1(n, "cfht", "r") for n in (0, 1, 2, 4)))
    with pytest.raises(QueryError, match="neither a job id nor"):
        backend.bucket("AM1", {"dataset": "hsc"}, as_of="no-such-job")

    client = TestClient(create_app(loaded), base_url="http://localhost")
    params = [("provenance", "dataset=cfht"), ("provenance", "band=r"), ("as_of", job_id(5, "cfht", "r")),
              ("exclude_annotated", "quality=bad")]  # fmt: skip
    assert client.get("/api/v1/buckets/AM1", params=params).json()["baseline"]["count"] == 4
    assert client.get("/api/v1/buckets/AM1", params=[("as_of", "nope")]).status_code == 404

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "bucket", "AM1", "dataset=cfht",
                                      "band=r", "--as-of", job_id(5, "cfht", "r"), "--exclude-annotated",
                                      "quality=bad", "--format", "json"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["baseline"]["count"] == 4


def test_jobs_grouped_by_provenance_keys_with_counts_per_status(loaded: Store) -> None:
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from jobprov.cli.main import cli
    from jobprov.query.api import create_app
    from jobprov.query.attributes import group_jobs
    from tests.integration.conftest import _CHDB_STORE

    found = group_jobs(loaded, ["param.dataset", "ctx.software.numpy"])
    assert [(g["group"], g["total"], g["statuses"]) for g in found] == [
        ({"param.dataset": "cfht", "ctx.software.numpy": "1.26.4"}, UPGRADE * 2, {"succeeded": UPGRADE * 2}),
        ({"param.dataset": "hsc", "ctx.software.numpy": "1.26.4"}, UPGRADE * 2, {"succeeded": UPGRADE * 2}),
        ({"param.dataset": "cfht", "ctx.software.numpy": "2.0.1"}, (NIGHTS - UPGRADE) * 2,
         {"succeeded": (NIGHTS - UPGRADE) * 2}),
        ({"param.dataset": "hsc", "ctx.software.numpy": "2.0.1"}, (NIGHTS - UPGRADE) * 2,
         {"succeeded": (NIGHTS - UPGRADE) * 2}),
    ]  # fmt: skip
    assert group_jobs(loaded, ["job.status", "sys.host"], ["param.band = r"]) == [
        {"group": {"job.status": "succeeded", "sys.host": "ci-runner-1"}, "total": NIGHTS * 2,
         "statuses": {"succeeded": NIGHTS * 2}}]  # fmt: skip
    assert group_jobs(loaded, ["param.nothing"]) == [
        {"group": {"param.nothing": None}, "total": NIGHTS * 4, "statuses": {"succeeded": NIGHTS * 4}}]  # fmt: skip
    with pytest.raises(QueryError, match="keys"):
        group_jobs(loaded, [])

    client = TestClient(create_app(loaded), base_url="http://localhost")
    body = client.get("/api/v1/job-groups", params=[("key", "param.band"), ("where", "param.dataset = hsc")]).json()
    assert [(g["group"]["param.band"], g["total"]) for g in body] == [("all", NIGHTS), ("r", NIGHTS)]
    assert client.get("/api/v1/job-groups", params={"key": "param.software.numpy"}).status_code == 400

    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    result = CliRunner().invoke(cli, ["query", "--store", f"chdb://{_CHDB_STORE[0]}", "groups", "param.band",
                                      "--where", "param.dataset = hsc", "--format", "csv"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "param.band,total,succeeded",
        f"all,{NIGHTS},{NIGHTS}",
        f"r,{NIGHTS},{NIGHTS}",
    ]
