"""`jobprov import junit|pytest-benchmark` as real processes: through the real broker, folded into the real store.

Importing a file twice sends its events twice; the store ends the same as after one import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from jobprov.schemas.wire import encode_event
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, events_of
from tests.integration.processing import ListDeadLetters

JOBPROV = [sys.executable, "-m", "jobprov.cli.main"]
SAMPLES = Path(__file__).parents[1] / "samples"


def _import(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env.update(JOBPROV_URL=url, JOBPROV_SPOOL_DIR=str(tmp_path / "spool"), JOBPROV_CAPTURE_PACKAGES="0")
    return subprocess.run([*JOBPROV, "import", *args], env=env, capture_output=True, text=True, timeout=120)


def _fold(store: Any, messages: list[Any]) -> None:
    """The worker's Processor over what the broker delivered (re-encoded: the same bytes the emitter framed)."""
    raw = [RawEvent(encode_event(e), "t", 0, i) for i, e in enumerate(events_of(messages))]
    Processor(ClickHouseSink(store, store.jobprov_database), ListDeadLetters(), FoldContext()).process_batch(raw)


def _rows(store: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in store.query(sql.format(db=store.jobprov_database)).result_rows]


def test_junit_import_twice_lands_once(kafka: Endpoint, topic: str, tmp_path: Path, store: Any) -> None:
    sample = SAMPLES / "junit-two-suites.xml"
    for _ in range(2):
        done = _import(tmp_path, kafka.url(topic), "junit", str(sample), "--parent-job-id", "ci-7")
        assert done.returncode == 0, done.stderr
        assert "imported 32 events of 2 jobs" in done.stderr
    messages = consume(kafka.bootstrap, topic, expected=64)
    assert len(messages) == 64, "each import sends every event"
    events = events_of(messages)
    assert len({e.event_id for e in events}) == 32, "the second import repeats the first's event ids"
    _fold(store, messages)
    assert _rows(store, "SELECT count() FROM {db}.events FINAL") == [(32,)]
    jobs = _rows(store, "SELECT job_id, name, kind, status, parent_job_id FROM {db}.jobs FINAL ORDER BY job_id")
    assert jobs == [
        ("junit-com.example.ParserTest-20260501T100100", "com.example.ParserTest", "ci", "succeeded", "ci-7"),
        ("junit-pytest-20260501T100000", "pytest", "ci", "failed", "ci-7"),
    ]
    steps = _rows(
        store,
        "SELECT name, status FROM {db}.steps FINAL WHERE job_id = 'junit-pytest-20260501T100000' ORDER BY name",
    )
    assert steps == [
        ("tests.test_io::test_read", "failed"),
        ("tests.test_io::test_write", "succeeded"),
        ("tests.test_math::test_add", "succeeded"),
        ("tests.test_math::test_big", "skipped"),
        ("tests.test_math::test_div", "failed"),
    ]


def test_a_bad_junit_file_sends_nothing(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(
        '<testsuite name="s" timestamp="2026-01-01T00:00:00Z"><testcase name="ok"/><testcase time="x"/></testsuite>'
    )
    done = _import(tmp_path, kafka.url(topic), "junit", str(bad))
    assert done.returncode == 1
    assert "nothing imported" in done.stderr and "testcase[2]: <testcase> has no name" in done.stderr
    assert "testcase[2]: time='x' is not a number" in done.stderr
    assert consume(kafka.bootstrap, topic, expected=0, timeout=4, idle=2) == []


def test_pytest_benchmark_import_twice_lands_once(kafka: Endpoint, topic: str, tmp_path: Path, store: Any) -> None:
    sample = SAMPLES / "pytest-benchmark.json"
    for _ in range(2):
        done = _import(tmp_path, kafka.url(topic), "pytest-benchmark", str(sample), "--job-id", "bench-1")
        assert done.returncode == 0, done.stderr
    messages = consume(kafka.bootstrap, topic, expected=2 * 26)
    assert len(messages) == 2 * 26
    _fold(store, messages)
    assert _rows(store, "SELECT count() FROM {db}.metric_points FINAL") == [(22,)]
    mean = _rows(
        store,
        "SELECT value, unit FROM {db}.metric_points FINAL WHERE metric = 'tests.test_bench::test_sort[100].mean'",
    )
    assert mean == [(4.6e-06, "s")]
    prov = _rows(store, "SELECT values FROM {db}.provenance FINAL WHERE job_id = 'bench-1'")[0][0]
    assert prov["machine.node"] == "bench-host-1"
    jobs = _rows(store, "SELECT status, host FROM {db}.jobs FINAL")
    assert jobs == [("succeeded", "bench-host-1")]


def test_slurm_import_from_stdin_twice_lands_once(kafka: Endpoint, topic: str, tmp_path: Path, store: Any) -> None:
    sample = (SAMPLES / "sacct.json").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env.update(JOBPROV_URL=kafka.url(topic), JOBPROV_SPOOL_DIR=str(tmp_path / "spool"))
    for _ in range(2):
        done = subprocess.run(
            [*JOBPROV, "import", "slurm", "-"], input=sample, env=env, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    messages = consume(kafka.bootstrap, topic, expected=2 * 43)
    assert len(messages) == 2 * 43
    _fold(store, messages)
    assert _rows(store, "SELECT count() FROM {db}.events FINAL") == [(43,)]
    jobs = _rows(
        store,
        "SELECT job_id, status, attempts, host, peak_rss_bytes, parent_job_id FROM {db}.jobs FINAL ORDER BY job_id",
    )
    assert jobs == [
        ("slurm-perlmutter-1001", "succeeded", 1, "node01", 4_294_967_296, None),
        ("slurm-perlmutter-1010_0", "succeeded", 1, "node03", 1_000_000_000, "slurm-perlmutter-1010"),
        ("slurm-perlmutter-1010_1", "failed", 1, "node04", 16_777_216_000, "slurm-perlmutter-1010"),
        ("slurm-perlmutter-1020", "succeeded", 2, "node06", 500_000_000, None),
        ("slurm-perlmutter-1030", "aborted", 1, None, None, None),
        ("slurm-perlmutter-1040", "queued", 1, None, None, None),
    ]
