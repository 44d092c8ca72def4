"""pytest-benchmark JSON (``pytest --benchmark-json=FILE``, or a saved ``.benchmarks/*/NNNN_*.json``) as a job.

One job per file. Each benchmark's statistics become metrics named ``<fullname>.<stat>``, the module path of
``fullname`` dotted (``tests.test_sort::test_sort[100].mean``), for ``min``, ``max``,
``mean``, ``stddev``, ``median``, ``iqr``, ``q1``, ``q3`` in seconds; ``ops`` in 1/s; ``rounds`` and
``iterations`` as counts), tagged with the benchmark's ``group``, ``params`` and ``extra_info``. The
``machine_info`` is the job's host and provenance (``machine.*`` keys: node, system, release, machine,
processor, python_implementation, python_version, cpu.brand_raw, cpu.count...), ``commit_info`` its git
commit, branch and dirty flag.

Times: the file's ``datetime`` (when pytest-benchmark wrote it; UTC when it carries no offset) is when the
job finished and the metrics were measured; the job started the sum of the benchmarks' ``stats.total``
earlier. Every problem is raised together as :class:`BadInputError`, naming the benchmark
(``benchmarks[3] 'test_sort[100]'``); nothing is imported then.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from jobprov.emitters.importers.send import BadInputError, Record, load_json
from jobprov.schemas.models import (
    GitInfo,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
)

IMPORTER = "pytest-benchmark"
STATS: dict[str, str | None] = {
    "min": "s",
    "max": "s",
    "mean": "s",
    "stddev": "s",
    "median": "s",
    "iqr": "s",
    "q1": "s",
    "q3": "s",
    "ops": "1/s",
    "rounds": None,
    "iterations": None,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    elif isinstance(value, list):
        out[prefix] = ",".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = str(value).lower() if isinstance(value, bool) else str(value)


def metric_base(fullname: str) -> str:
    """``tests/test_x.py::test_sort[100]`` -> ``tests.test_x::test_sort[100]``: the module path dotted, with no
    ``/`` (metric names travel in URL paths)."""
    path, sep, rest = fullname.partition("::")
    if sep:
        fullname = f"{path.removesuffix('.py')}::{rest}"
    return fullname.replace("/", ".")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _when(doc: dict[str, Any], problems: list[str]) -> datetime | None:
    raw = doc.get("datetime")
    if not isinstance(raw, str):
        problems.append("datetime: missing (pytest-benchmark writes when the run ended)")
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"datetime: {raw!r} is not ISO 8601")
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _benchmark(bench: Any, where: str, job_id: str, at: datetime, problems: list[str]) -> tuple[list[Record], float]:
    if not isinstance(bench, dict):
        problems.append(f"{where}: not an object")
        return [], 0.0
    name = bench.get("fullname") or bench.get("name")
    stats = bench.get("stats")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: no name")
        return [], 0.0
    where = f"{where} {name!r}"
    if not isinstance(stats, dict):
        problems.append(f"{where}: no stats")
        return [], 0.0
    tags: dict[str, str] = {}
    if bench.get("group") is not None:
        tags["group"] = str(bench["group"])
    for key in ("params", "extra_info"):
        if isinstance(bench.get(key), dict):
            _flat(key, bench[key], tags)
    records = []
    for stat, unit in STATS.items():
        if stat not in stats:
            continue
        value = stats[stat]
        if not _number(value):
            problems.append(f"{where}: stats.{stat} = {value!r} is not a finite number")
            continue
        metric = MetricMeasured(name=f"{metric_base(name)}.{stat}", value=float(value), unit=unit, tags=tags)
        records.append(Record(job_id, metric, at, f"{name}.{stat}"))
    if "mean" not in stats:
        problems.append(f"{where}: stats has no mean")
    total: Any = stats.get("total")
    return records, float(total) if _number(total) and total >= 0 else 0.0


def read_pytest_benchmark(
    data: bytes,
    source: str,
    *,
    job_id: str | None = None,
    name: str = "pytest-benchmark",
    parent_job_id: str | None = None,
) -> list[Record]:
    """The records of one pytest-benchmark JSON file (see the module docstring)."""
    doc = load_json(data, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise BadInputError(source, ["not a pytest-benchmark file: no 'benchmarks' list"])
    problems: list[str] = []
    end = _when(doc, problems)
    if end is None:
        raise BadInputError(source, problems)
    machine: dict[str, Any] = doc["machine_info"] if isinstance(doc.get("machine_info"), dict) else {}
    commit: dict[str, Any] = doc["commit_info"] if isinstance(doc.get("commit_info"), dict) else {}
    if job_id is None:
        node = _UNSAFE.sub("_", str(machine.get("node") or "host"))
        job_id = f"bench-{node}-{end.astimezone(UTC):%Y%m%dT%H%M%S}-{hashlib.sha256(data).hexdigest()[:8]}"
    metrics: list[Record] = []
    busy = 0.0
    for i, bench in enumerate(doc["benchmarks"], 1):
        records, total = _benchmark(bench, f"benchmarks[{i}]", job_id, end, problems)
        metrics += records
        busy += total
    if problems:
        raise BadInputError(source, problems)
    start = end - timedelta(seconds=busy)
    values: dict[str, str] = {}
    _flat("machine", machine, values)
    software = {"python": str(machine["python_version"])} if machine.get("python_version") else {}
    if doc.get("version"):
        software["pytest-benchmark"] = str(doc["version"])
    git = None
    if commit.get("id"):
        dirty = commit.get("dirty")
        git = GitInfo(
            commit=str(commit["id"]),
            branch=str(commit["branch"]) if commit.get("branch") else None,
            dirty=dirty if isinstance(dirty, bool) else None,
        )
    host = JobStarted(
        host=str(machine.get("node") or ""),
        os=str(machine.get("system") or ""),
        kernel=str(machine.get("release") or ""),
        python=str(machine["python_version"]) if machine.get("python_version") else None,
        cwd="",
    )
    return [
        Record(job_id, JobSubmitted(name=name, kind="ci", parent_job_id=parent_job_id), start, "submitted"),
        Record(job_id, host, start, "started"),
        Record(job_id, ProvenanceDeclared(values=values, software=software, git=git), start, "provenance"),
        *metrics,
        Record(job_id, JobFinished(status="succeeded", duration_ms=round(busy * 1000)), end, "finished"),
    ]
