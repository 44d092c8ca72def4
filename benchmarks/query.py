"""Query and sink benchmarks on the embedded ClickHouse engine, baselines measured in the same run.

1. Sink ingest: the ClickHouse sink (records -> rows -> insert) vs a bare ``insert_arrow`` of the same rows.
2. A store of N metric points (default 10M) over ~100k jobs, loaded column-wise, then p50/p95 of: the series of
   one bucket, which-bucket + baseline, compare two jobs, ancestors at depth 10; and bytes on disk per point.

Targets (issue notes): series < 50 ms, which-bucket < 5 ms, compare < 20 ms, ancestors depth 10 < 50 ms,
< 30 bytes per point. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient

from jobprov.query.api import create_app
from jobprov.query.lineage import ancestors
from jobprov.query.series import baseline, compare_jobs, series, which_bucket
from jobprov.query.store import Store
from jobprov.sinks.clickhouse.client import connect
from jobprov.sinks.clickhouse.ddl import Target, copy_buckets
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import TABLES, ClickHouseSink
from jobprov.stream_processors.comparability import bucket_keys, fingerprint
from jobprov.stream_processors.records import LineageEdge, MetricPoint

DATASETS = ["testdata_hsc", "testdata_cfht", "testdata_ci_imsim", "testdata_decam"]
BANDS = ["u", "g", "r", "i", "z", "y", "all"]
MAP = pa.map_(pa.string(), pa.string())
METRICS = ["AM1", "AM2", "AM3", "PA1", "PA2", "TE1", "TE2", "AF1", "AD1", "PF1"]


def timed(fn: Callable[[], Any], repeat: int = 30) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def bench_sink(client: Any, database: str, n: int) -> None:
    points = [
        MetricPoint(f"job-{i // 10}", f"e{i}", METRICS[i % 10], float(i), "mas", 1_780_000_000_000 + i, 1, None,
                    {}, "b" * 16, {"dataset": "d", "band": "r"}, "v1", 1)
        for i in range(n)
    ]  # fmt: skip
    sink = ClickHouseSink(client, database)
    t0 = time.perf_counter()
    for i in range(0, n, 5000):
        sink.write(points[i : i + 5000])
        sink.flush(60)
    sink_rate = n / (time.perf_counter() - t0)
    client.command(f"TRUNCATE TABLE {database}.metric_points")
    spec = TABLES[MetricPoint]
    maps = {"tags", "bucket_keys"}
    table = pa.table({
        c: pa.array([list(v.items()) for v in values], pa.map_(pa.string(), pa.string())) if c in maps
        else pa.array(values, pa.timestamp("ms", tz="UTC")) if c == "time"
        else values
        for c, values in zip(spec.column_names, spec.columns_of(points), strict=True)
    })  # fmt: skip
    t0 = time.perf_counter()
    for i in range(0, n, 5000):
        client.insert_arrow(f"{database}.metric_points", table.slice(i, 5000))
    arrow_rate = n / (time.perf_counter() - t0)
    client.command(f"TRUNCATE TABLE {database}.metric_points")
    print(f"sink ingest, {n} metric points in batches of 5000:")
    print(f"  ClickHouse sink (records -> rows -> insert): {sink_rate:,.0f} rows/s")
    print(
        f"  bare insert_arrow of the same rows:          {arrow_rate:,.0f} rows/s   ratio {arrow_rate / sink_rate:.1f}x"
    )


def load(client: Any, database: str, points: int, jobs: int, chunk: int = 1_000_000) -> list[str]:
    """Metric points, provenance and a lineage chain, column-wise; returns the job ids."""
    rng = np.random.default_rng(1)
    job_ids = np.array([f"job-{j:06d}" for j in range(jobs)])
    job_dataset = rng.integers(0, len(DATASETS), jobs)
    job_band = rng.integers(0, len(BANDS), jobs)
    job_time = 1_750_000_000_000 + np.sort(rng.integers(0, 400 * 86_400_000, jobs))
    numpy_version = np.where(np.arange(jobs) > jobs // 2, "2.0.1", "1.26.4")
    buckets = {
        (d, b): fingerprint(bucket_keys(("dataset", "band", "config.hash"), {"dataset": d, "band": b}))
        for d in DATASETS
        for b in BANDS
    }
    prov = pa.table({
        "job_id": job_ids,
        "values": pa.array(
            [[("dataset", DATASETS[d]), ("band", BANDS[b]), ("software.numpy", v), ("host", f"node{j % 97}")]
             for j, (d, b, v) in enumerate(zip(job_dataset, job_band, numpy_version, strict=True))],
            MAP,
        ),
        "default_bucket": [buckets[(DATASETS[d], BANDS[b])] for d, b in zip(job_dataset, job_band, strict=True)],
        "config_snapshot_uri": pa.nulls(jobs, pa.string()),
        "state_version": np.full(jobs, 10, dtype=np.uint64),
        "fold_version": np.ones(jobs, dtype=np.uint16),
    })  # fmt: skip
    client.insert_arrow(f"{database}.provenance", prov)
    for start in range(0, points, chunk):
        n = min(chunk, points - start)
        job = rng.integers(0, jobs, n)
        metric = rng.integers(0, len(METRICS), n)
        d, b = job_dataset[job], job_band[job]
        table = pa.table({
            "metric": pa.array(np.array(METRICS)[metric]).dictionary_encode(),
            "bucket": [buckets[(DATASETS[x], BANDS[y])] for x, y in zip(d, b, strict=True)],
            "time": pa.array(job_time[job] + rng.integers(0, 3_600_000, n), pa.timestamp("ms", tz="UTC")),
            "job_id": job_ids[job],
            "event_id": [f"e{start + i}" for i in range(n)],
            "value": rng.normal(10, 1, n),
            "unit": pa.array(["mas"] * n).dictionary_encode(),
            "attempt": np.ones(n, dtype=np.uint16),
            "step": pa.nulls(n, pa.string()),
            "tags": pa.array([[]] * n, MAP),
            "bucket_keys": pa.array([[("dataset", DATASETS[x]), ("band", BANDS[y]), ("config.hash", "")]
                                     for x, y in zip(d, b, strict=True)], MAP),
            "registry_version": pa.array(["v1"] * n).dictionary_encode(),
            "state_version": np.full(n, 10, dtype=np.uint64),
            "is_deleted": np.zeros(n, dtype=np.uint8),
            "fold_version": np.ones(n, dtype=np.uint16),
        })  # fmt: skip
        client.insert_arrow(f"{database}.metric_points", table)
    # The sink writes a bucket's row the first time it sees the bucket; a bulk load copies them in once.
    client.command(copy_buckets(Target(database)))
    # A lineage chain of 12 jobs through 12 artifacts, to walk 10 levels up.
    edges = []
    for k in range(12):
        edges.append((f"artifact:file:///c/{k}", f"job:{job_ids[k]}", "used"))
        edges.append((f"job:{job_ids[k]}", f"artifact:file:///c/{k + 1}", "produced"))
    client.insert(
        f"{database}.lineage",
        [[s, d, r, "j", f"l{i}", 1_750_000_000_000, None, None, None, None, 1, 1] for i, (s, d, r) in enumerate(edges)],
        column_names=TABLES[LineageEdge].column_names,
    )
    client.command(f"OPTIMIZE TABLE {database}.metric_points FINAL")
    return list(job_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--sink-rows", type=int, default=200_000)
    args = parser.parse_args()
    client = connect(f"chdb://{tempfile.mkdtemp(prefix='jobprov-query-bench-')}")
    database = "bench"
    migrate(client, Target(database))
    bench_sink(client, database, args.sink_rows)

    t0 = time.perf_counter()
    jobs = load(client, database, args.points, args.jobs)
    print(f"\nloaded {args.points:,} metric points over {args.jobs:,} jobs in {time.perf_counter() - t0:.0f} s")
    store = Store(client, database)
    api = TestClient(create_app(store))
    bucket, _ = which_bucket("AM1", {"dataset": "testdata_hsc", "band": "r"})
    n_points = sum(len(line) for line in series(store, "AM1", bucket=bucket))
    results = {
        f"series of one bucket ({n_points:,} points)": timed(lambda: series(store, "AM1", bucket=bucket)),
        # What a consumer gets: the same series through the HTTP API, as JSON (no target; for reference).
        "  the same, HTTP API to JSON bytes": timed(
            lambda: api.get(f"/api/v1/series/AM1?bucket={bucket}").content, repeat=10
        ),
        "which bucket (computed, no store)": timed(
            lambda: which_bucket("AM1", {"dataset": "testdata_hsc", "band": "r"})
        ),
        "which bucket + baseline (last 50)": timed(lambda: baseline(store, "AM1", bucket, 50)),
        "compare two jobs": timed(lambda: compare_jobs(store, jobs[10], jobs[-10])),
        "ancestors, depth 10": timed(lambda: ancestors(store, "file:///c/12", depth=10)),
    }
    for name, (p50, p95) in results.items():
        print(f"  {name:<40} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms")
    size = client.query(
        f"SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = '{database}' "
        "AND table = 'metric_points' AND active"
    ).result_rows[0]
    print(f"  storage: {size[0] / max(size[1], 1):.1f} bytes per metric point on disk")


if __name__ == "__main__":
    main()
