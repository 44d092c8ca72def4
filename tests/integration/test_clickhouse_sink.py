"""The ClickHouse sink on the real engine (embedded chdb): migrations, idempotency, re-bucketing, backpressure."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobprov.query.series import series, which_bucket
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import (
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
from jobprov.sinks.base import SinkBackpressure
from jobprov.sinks.clickhouse.client import ENGINE_ALLOCATOR_ENV
from jobprov.sinks.clickhouse.ddl import Target, migrations
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.records import EventRecord
from tests.integration.processing import ListDeadLetters

T0 = datetime(2026, 5, 1, tzinfo=UTC)
PRODUCER = Producer("test", "0", "p")


def _job(job_id: str, dataset: str, values: list[float], late_provenance: bool = False) -> list[Event]:
    payloads: list[Any] = [
        JobSubmitted(name="validate", kind="ci"),
        JobStarted(host="h1", os="linux", kernel="6", cwd="/"),
        ArtifactUsed(uri=f"file:///in/{job_id}"),
        StepStarted(name="measure"),
        *[MetricMeasured(name="AM1", value=v, unit="mas") for v in values],
        StepFinished(name="measure", status="succeeded"),
        ArtifactProduced(uri=f"file:///out/{job_id}"),
        JobFinished(status="succeeded", exit_code=0),
    ]
    provenance = ProvenanceDeclared(values={"dataset": dataset, "band": "r"})
    payloads.insert(len(payloads) if late_provenance else 2, provenance)
    events = []
    for seq, payload in enumerate(payloads, 1):
        t = T0 + timedelta(seconds=seq)
        events.append(
            Event(f"{job_id}-{seq}", job_id, type(payload).__name__, ms(t), ms(t), PRODUCER, seq, payload=payload)
        )
    return events


def _raw(events: list[Event]) -> list[RawEvent]:
    return [RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(events)]


def _count(client: Any, table: str, where: str = "1") -> int:
    db = client.jobprov_database
    return int(client.query(f"SELECT count() FROM {db}.{table} FINAL WHERE {where}").result_rows[0][0])


def test_migrations_are_idempotent_and_create_every_table(store: Any) -> None:
    db = store.jobprov_database
    assert migrate(store, Target(db)) == [], "already applied: nothing to do"
    tables = {r[0] for r in store.query(f"SHOW TABLES FROM {db}").result_rows}
    assert tables >= {"events", "jobs", "provenance", "metric_points", "resources", "lineage", "annotations",
                      "steps", "dead_letters", "schema_migrations", "buckets", "attempts"}  # fmt: skip
    columns = dict(store.query(f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'jobs'")
                   .result_rows)  # fmt: skip
    assert columns["last_event_at"] == "DateTime64(3, 'UTC')"


def test_production_ddl_uses_cluster_and_replicated_engines() -> None:
    statements = [s for _, _, group in migrations(Target("jp", cluster="prod")) for s in group]
    ddl = [s for s in statements if not s.startswith("INSERT")]  # data statements take no ON CLUSTER
    assert ddl and all("ON CLUSTER prod" in s for s in ddl)
    assert all("ReplicatedReplacingMergeTree" in s for s in statements if "ENGINE" in s)
    embedded = [s for _, _, group in migrations(Target("jp")) for s in group]
    assert not any("Replicated" in s or "ON CLUSTER" in s for s in embedded)


def test_redelivered_batches_leave_no_duplicates(store: Any) -> None:
    sink = ClickHouseSink(store, store.jobprov_database)
    processor = Processor(sink, ListDeadLetters(), FoldContext())
    events = _job("j1", "hsc", [1.0, 2.0, 3.0]) + _job("j2", "cfht", [4.0])
    processor.process_batch(_raw(events))
    # The same messages again (a redelivery after a crash before commit), through a fresh processor.
    Processor(sink, ListDeadLetters(), FoldContext()).process_batch(_raw(events))
    processor.process_batch(_raw(events))  # and duplicates into the same state
    assert _count(store, "events") == len(events)
    assert _count(store, "jobs") == 2
    assert _count(store, "metric_points") == 4
    assert _count(store, "lineage") == 4
    assert _count(store, "steps") == 2
    assert _buckets(store) == {"hsc": ("r", "mas"), "cfht": ("r", "mas")}, "one row per bucket, however often sent"
    raw = store.query(f"SELECT count() FROM {store.jobprov_database}.buckets").result_rows[0][0]
    assert raw == 2, "a sink writes a bucket's row once, not once per point or per delivery"
    # Another sink (a restarted worker) writes them again: still one row per bucket once deduplicated.
    Processor(ClickHouseSink(store, store.jobprov_database), ListDeadLetters(), FoldContext()).process_batch(
        _raw(events)
    )
    assert _buckets(store) == {"hsc": ("r", "mas"), "cfht": ("r", "mas")}
    db = store.jobprov_database
    status = store.query(f"SELECT job_id, status, event_count FROM {db}.jobs FINAL ORDER BY job_id").result_rows
    assert status == [("j1", "succeeded", 11), ("j2", "succeeded", 9)]


def test_late_provenance_moves_points_to_their_bucket(store: Any) -> None:
    sink = ClickHouseSink(store, store.jobprov_database)
    processor = Processor(sink, ListDeadLetters(), FoldContext())
    events = _job("late", "hsc", [1.0, 2.0], late_provenance=True)
    for event in events:  # one event per batch: the points are written before the provenance arrives
        processor.process_batch(_raw([event]))
    db = store.jobprov_database
    rows = store.query(f"SELECT bucket_keys['dataset'], count() FROM {db}.metric_points FINAL GROUP BY 1").result_rows
    assert rows == [("hsc", 2)], "the rows in the provisional bucket were deleted"
    raw_rows = store.query(f"SELECT count() FROM {db}.metric_points").result_rows[0][0]
    assert raw_rows >= 4, "the provisional rows existed and were superseded, not updated in place"
    # The provisional bucket keeps its row in `buckets` (its own keys, never the new ones); the series shows
    # only the bucket the points moved to, labelled with its keys.
    (line,) = series(Store(store, db), "AM1")
    assert line.label["dataset"] == "hsc" and line.values == [1.0, 2.0]
    labels = store.query(f"SELECT bucket, keys FROM {db}.buckets FINAL").result_rows
    assert {"dataset": "hsc", "band": "r", "config.hash": ""} in [dict(keys) for _, keys in labels]
    assert all(bucket == which_bucket("AM1", dict(keys))[0] for bucket, keys in labels), "no bucket mislabelled"


def test_late_provenance_moves_points_still_in_the_buffer_without_reading_the_store(store: Any) -> None:
    """Points and the provenance that moves them in one flush: moved where they wait, never written in the
    provisional bucket; a move of points partly stored already reads the stored ones back."""
    db = store.jobprov_database
    processor = Processor(ClickHouseSink(store, db), ListDeadLetters(), FoldContext())
    processor.process_batch(_raw(_job("together", "hsc", [1.0, 2.0], late_provenance=True)))
    split = _job("split", "cfht", [3.0, 4.0, 5.0], late_provenance=True)
    processor.process_batch(_raw(split[:5]))  # the first point stored in the provisional bucket
    processor.process_batch(_raw(split[5:]))  # two more points and the provenance in the buffer
    rows = store.query(
        f"SELECT job_id, bucket_keys['dataset'], count() FROM {db}.metric_points FINAL WHERE is_deleted = 0 "
        "GROUP BY 1, 2 ORDER BY 1"
    ).result_rows
    assert rows == [("split", "cfht", 3), ("together", "hsc", 2)]
    raw = dict(store.query(f"SELECT job_id, count() FROM {db}.metric_points GROUP BY 1").result_rows)
    assert raw["together"] == 2, "moved in the buffer: no provisional row, no delete row"
    assert raw["split"] == 5, "three points, and the stored one's provisional row and its delete row"


def _buckets(client: Any, database: str | None = None) -> dict[str, tuple[str, str | None]]:
    """dataset -> (band, unit) of every row of ``buckets``, after deduplication."""
    db = database or client.jobprov_database
    rows = client.query(f"SELECT keys, unit FROM {db}.buckets FINAL WHERE metric = 'AM1'").result_rows
    assert len(rows) == len({dict(keys)["dataset"] for keys, _ in rows})
    return {dict(keys)["dataset"]: (dict(keys)["band"], unit) for keys, unit in rows}


def test_buckets_of_points_stored_before_the_table_existed_are_copied_in(store: Any) -> None:
    processor = Processor(ClickHouseSink(store, store.jobprov_database), ListDeadLetters(), FoldContext())
    processor.process_batch(_raw(_job("old", "hsc", [1.0])))
    for event in _job("older", "cfht", [2.0], late_provenance=True):  # its point is written before its provenance
        processor.process_batch(_raw([event]))
    db = "t_buckets_backfill"
    store.command(f"DROP DATABASE IF EXISTS {db}")
    for statement in migrations(Target(db))[0][2]:  # the store as version 1 left it: no buckets table
        store.command(statement)
    store.command(f"INSERT INTO {db}.metric_points SELECT * FROM {store.jobprov_database}.metric_points")
    assert 2 in migrate(store, Target(db))
    rows = store.query(f"SELECT bucket, keys, unit FROM {db}.buckets FINAL").result_rows
    assert {dict(keys)["dataset"] for _, keys, _ in rows} >= {"hsc", "cfht"}
    assert all(bucket == which_bucket("AM1", dict(keys))[0] and unit == "mas" for bucket, keys, unit in rows), (
        "each bucket with its own keys, never those of the bucket a point moved to"
    )
    store.command(f"DROP DATABASE IF EXISTS {db}")


def test_series_are_labelled_even_when_the_buckets_table_misses_a_bucket(store: Any) -> None:
    db = store.jobprov_database
    Processor(ClickHouseSink(store, db), ListDeadLetters(), FoldContext()).process_batch(
        _raw(_job("j1", "hsc", [1.0]) + _job("j2", "cfht", [2.0]))
    )
    before = series(Store(store, db), "AM1")
    store.command(f"TRUNCATE TABLE {db}.buckets")  # as after swapping in points from another database
    after = series(Store(store, db), "AM1")
    assert after == before
    assert sorted(line.label["dataset"] for line in after) == ["cfht", "hsc"]
    assert {line.unit for line in after} == {"mas"}


class _Flaky:
    """The real sink behind a switch that makes flushes fail as if the server were down."""

    name = "flaky"
    wants_events = True

    def __init__(self, inner: ClickHouseSink, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def write(self, records: Any) -> None:
        self.inner.write(records)

    def flush(self, timeout: float) -> None:
        self._outage()
        self.inner.flush(timeout)

    def detach(self) -> Any:
        return _FlakyBatch(self, self.inner.detach())

    def _outage(self) -> None:
        if self.failures:
            self.failures -= 1
            raise SinkBackpressure("simulated outage", retry_after=0.05)

    def close(self) -> None:
        self.inner.close()


class _FlakyBatch:
    def __init__(self, flaky: _Flaky, inner: Any) -> None:
        self.flaky, self.inner = flaky, inner

    def flush(self, timeout: float) -> None:
        self.flaky._outage()
        self.inner.flush(timeout)


def test_store_unavailable_pushes_back_and_loses_nothing(store: Any) -> None:
    flaky = _Flaky(ClickHouseSink(store, store.jobprov_database), failures=3)
    processor = Processor(flaky, ListDeadLetters(), FoldContext())
    waits: list[float] = []
    processor.on_wait = lambda: waits.append(1.0)  # the worker's liveness beat: waiting is not hanging
    events = _job("slow", "hsc", [1.0, 2.0, 3.0])
    processor.process_batch(_raw(events))
    assert flaky.failures == 0, "the batch waited through every failed flush"
    assert len(waits) == 3
    assert _count(store, "events") == len(events)
    assert _count(store, "metric_points") == 3


def test_second_process_on_the_store_gets_a_clear_message(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from jobprov.sinks.clickhouse.client import connect, StoreBusyError\n"
        f"owner = connect('chdb://{tmp_path}/store')\n"
        "import subprocess\n"
        "child = subprocess.run([sys.executable, '-c', "
        f"\"from jobprov.sinks.clickhouse.client import connect; connect('chdb://{tmp_path}/store')\"], "
        "capture_output=True, text=True)\n"
        "print(child.returncode); print(child.stderr[-600:])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines()[0] != "0"
    assert "is open in another jobprov process" in done.stdout


def test_dead_letters_land_in_the_table_once_each(store: Any) -> None:
    from jobprov.sinks.clickhouse.sink import ClickHouseDeadLetters
    from jobprov.stream_processors.dead_letters import FanOut

    kept = ListDeadLetters()
    dead = FanOut(kept, ClickHouseDeadLetters(store, store.jobprov_database))
    processor = Processor(ClickHouseSink(store, store.jobprov_database), dead, FoldContext())
    good = _raw(_job("ok", "hsc", [1.0]))
    garbage = [
        RawEvent(b"\xc3\x01" + b"\x00" * 8 + b"junk", "events", 0, 100),
        RawEvent(b"plain text", "events", 0, 101),
    ]
    processor.process_batch(good + garbage)
    processor.process_batch(garbage)  # redelivered
    db = store.jobprov_database
    rows = store.query(
        f"SELECT source_offset, reason, raw FROM {db}.dead_letters FINAL ORDER BY source_offset"
    ).result_rows
    assert [(r[0], r[1]) for r in rows] == [(100, "unknown_schema"), (101, "undecodable")]
    assert rows[1][2] in (b"plain text", "plain text")
    assert len(kept.items) == 4, "the other target got every dead letter too"
    assert _count(store, "jobs") == 1


def test_workers_migrate_on_start_unless_told_not_to(store: Any) -> None:
    from jobprov.settings import load_processor_settings
    from jobprov.stream_processors.worker import make_sink
    from tests.integration.conftest import _CHDB_STORE

    def tables(database: str) -> set[str]:
        rows = store.query("SELECT name FROM system.tables WHERE database = {d:String}", parameters={"d": database})
        return {r[0] for r in rows.result_rows}

    url = f"chdb://{_CHDB_STORE[0]}"
    for database, migrate_on_start, wanted in (("t_migrated_on_start", True, True), ("t_left_to_a_job", False, False)):
        store.command(f"DROP DATABASE IF EXISTS {database}")
        env = {"JOBPROV_PROCESSOR_MIGRATE_ON_START": str(migrate_on_start).lower()}
        settings = load_processor_settings({"sink_url": url, "clickhouse_database": database}, env=env)
        make_sink(settings)
        assert ("metric_points" in tables(database)) is wanted
        store.command(f"DROP DATABASE IF EXISTS {database}")


def test_a_flush_keeps_nothing_it_inserted(store: Any) -> None:
    """Once a flush's rows are in the store the sink holds none of their values (a reused insert context kept
    its last block's columns, and with them a flush's worth of the interpreter's memory, until the next one)."""
    sink = ClickHouseSink(store, store.jobprov_database)
    for round_ in range(2):  # the second flush goes through what the first one set up
        raws = [f"raw {round_} {n}".encode() for n in range(3)]
        held = [sys.getrefcount(raw) for raw in raws]
        sink.write([EventRecord(f"kept-{round_}-{n}", "kept", "JobStarted", 0, 0, "p/0", "i", n, 1, raw)
                    for n, raw in enumerate(raws)])  # fmt: skip
        sink.flush(30.0)
        gc.collect()  # the driver's insert leaves reference cycles, which the worker collects after each flush
        assert [sys.getrefcount(raw) for raw in raws] == held, "only this test still refers to the rows' values"
    assert _count(store, "events") == 6


def test_the_embedded_engine_returns_freed_pages_at_once_unless_a_batch_or_the_environment_says_otherwise(
    tmp_path: Path,
) -> None:
    """The engine's allocator is configured before the engine loads, through the same imports as the commands."""
    code = (
        "import jobprov.cli.main\n"
        "from jobprov.sinks.clickhouse.client import connect\n"
        f"client = connect('chdb://{tmp_path}/store')\n"
        "stats = client.query('SELECT * FROM system.jemalloc_stats').result_rows[0][0]\n"
        "print(next(line.strip() for line in stats.splitlines() if 'opt.dirty_decay_ms' in line))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENGINE_ALLOCATOR_ENV}
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert ours.stdout.startswith("opt.dirty_decay_ms: 0 "), ours.stdout + ours.stderr
    batch = code.replace("import jobprov.cli.main\n", "import jobprov.cli.main\n" + BATCH)  # as `jobprov replay`
    build = subprocess.run([sys.executable, "-c", batch], capture_output=True, text=True, timeout=120, env=env)
    assert build.stdout.startswith("opt.dirty_decay_ms: 5000 "), build.stdout + build.stderr
    env[ENGINE_ALLOCATOR_ENV] = "dirty_decay_ms:2000"
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert theirs.stdout.startswith("opt.dirty_decay_ms: 2000 "), theirs.stdout + theirs.stderr


BATCH = (
    "from jobprov.sinks.clickhouse.client import BATCH_ENGINE_ALLOCATOR_OPTIONS, configure_engine_allocator\n"
    "configure_engine_allocator(BATCH_ENGINE_ALLOCATOR_OPTIONS)\n"
)
