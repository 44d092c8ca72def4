"""pytest-benchmark JSON -> records: a metric per statistic, machine info as provenance, bad benchmarks named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobprov.emitters.importers.pytest_benchmark import read_pytest_benchmark
from jobprov.emitters.importers.send import BadInputError, check
from jobprov.schemas.models import JobFinished, JobStarted, MetricMeasured, ProvenanceDeclared

SAMPLE = Path(__file__).parents[3] / "samples" / "pytest-benchmark.json"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    return doc


def test_every_statistic_is_a_metric_with_unit_and_tags() -> None:
    records = read_pytest_benchmark(SAMPLE.read_bytes(), str(SAMPLE))
    metrics = {r.payload.name: r.payload for r in records if isinstance(r.payload, MetricMeasured)}
    mean = metrics["tests.test_bench::test_sort[100].mean"]
    assert (mean.value, mean.unit) == (4.6e-06, "s")
    assert mean.tags == {"group": "sort", "params.size": "100", "extra_info.algorithm": "timsort"}
    assert metrics["tests.test_bench::test_sort[10000].ops"].unit == "1/s"
    assert metrics["tests.test_bench::test_sort[10000].rounds"].value == 1500
    assert len(metrics) == 2 * 11, "min max mean stddev median iqr q1 q3 ops rounds iterations, per benchmark"
    assert check(records) == []


def test_machine_info_is_the_host_and_provenance() -> None:
    records = read_pytest_benchmark(SAMPLE.read_bytes(), str(SAMPLE))
    assert {r.job_id for r in records} == {records[0].job_id}
    assert records[0].job_id.startswith("bench-bench-host-1-20260501T100500-")
    started = next(r.payload for r in records if isinstance(r.payload, JobStarted))
    assert (started.host, started.os, started.kernel, started.python) == (
        "bench-host-1",
        "Linux",
        "6.1.0-18-amd64",
        "3.11.2",
    )
    prov = next(r.payload for r in records if isinstance(r.payload, ProvenanceDeclared))
    assert prov.values["machine.cpu.brand_raw"] == "Intel(R) Core(TM) i7-10510U CPU @ 1.80GHz"
    assert prov.values["machine.cpu.count"] == "8"
    assert prov.git is not None and (prov.git.commit[:7], prov.git.branch, prov.git.dirty) == ("5c1b8e2", "main", False)
    assert prov.software == {"python": "3.11.2", "pytest-benchmark": "4.0.0"}
    end = datetime(2026, 5, 1, 10, 5, 0, 123456, tzinfo=UTC)
    finished = records[-1]
    assert isinstance(finished.payload, JobFinished) and finished.time == end
    assert records[0].time == end - timedelta(seconds=0.0966 + 0.825)


def test_job_id_name_and_parent() -> None:
    records = read_pytest_benchmark(SAMPLE.read_bytes(), "b.json", job_id="bench-1", name="nightly", parent_job_id="p")
    assert {r.job_id for r in records} == {"bench-1"}
    assert records[0].payload.name == "nightly" and records[0].payload.parent_job_id == "p"


def _broken(change: Any) -> bytes:
    doc = _doc()
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"benchmarks": [', r"line 1, column \d+: not JSON"),
        (b"[]", r"no 'benchmarks' list"),
        (_broken(lambda d: d.pop("datetime")), r"datetime: missing"),
        (
            _broken(lambda d: d["benchmarks"][1]["stats"].update(mean="fast", max=float("inf"))),
            r"benchmarks\[2\] 'tests/test_bench.py::test_sort\[10000\]': stats.max = inf(.|\n)*stats.mean = 'fast'",
        ),
        (_broken(lambda d: d["benchmarks"][0].pop("stats")), r"benchmarks\[1\] '.*test_sort\[100\]': no stats"),
        (_broken(lambda d: d["benchmarks"].append(3)), r"benchmarks\[3\]: not an object"),
    ],
)
def test_bad_input_names_the_benchmark_and_keeps_nothing(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        read_pytest_benchmark(data, "bad.json")
