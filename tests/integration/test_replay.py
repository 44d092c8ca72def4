"""Replay rebuilds every derived table from the log: it agrees row for row with the live pipeline."""

from __future__ import annotations

from typing import Any

import pytest

from jobprov.errors import JobprovError, SinkError
from jobprov.query.series import series
from jobprov.query.store import Store
from jobprov.schemas.binary import timestamp_millis as ms
from jobprov.schemas.models import Event, JobStarted, JobSubmitted
from jobprov.schemas.wire import decode_event, encode_event
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.sinks.clickhouse.migrate import migrate
from jobprov.sinks.clickhouse.sink import ClickHouseSink
from jobprov.stream_processors import replay as replay_module
from jobprov.stream_processors.comparability import ComparabilityRegistry
from jobprov.stream_processors.fold import FoldContext
from jobprov.stream_processors.processor import Processor, RawEvent
from jobprov.stream_processors.replay import from_events_table, from_spool, replay, swap, verify
from tests.integration.processing import ListDeadLetters
from tests.integration.test_bounded_state import _CutWriter
from tests.integration.test_queries import PRODUCER, T0, campaign


def _live(store: Any) -> str:
    """The live pipeline: small batches, late provenance and all, as the worker would write them."""
    db = store.jobprov_database
    processor = Processor(ClickHouseSink(store, db), ListDeadLetters(), FoldContext())
    raw = [RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(campaign())]
    for i in range(0, len(raw), 7):
        processor.process_batch(raw[i : i + 7])
    return str(db)


def test_replay_from_the_events_table_agrees_row_for_row_and_swaps(store: Any) -> None:
    live = _live(store)
    shadow = f"{live}_shadow"
    report = replay(from_events_table(store, live), store, shadow, progress=False)
    assert report.events == len(campaign())
    result = verify(store, live, shadow)
    assert result.clean, result.differences
    jobs_before = store.query(f"SELECT count() FROM {live}.jobs FINAL").result_rows
    swap(store, live, shadow, result)
    assert store.query(f"SELECT count() FROM {live}.jobs FINAL").result_rows == jobs_before
    assert verify(store, live, shadow).clean, "after the swap the old live tables are the shadow"
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_the_events_table_reads_in_batches_each_message_at_its_own_position(store: Any) -> None:
    live = _live(store)
    source = from_events_table(store, live)
    pages = list(source.batches(4))
    assert [len(p.messages) for p in pages[:-1]] == [4] * (len(pages) - 1) and 1 <= len(pages[-1].messages) <= 4
    messages = [m for p in pages for m in p.messages]
    assert [m.offset for m in messages] == list(range(len(campaign())))  # distinct rows for dead letters
    assert {m.topic for m in messages} == {"events-table"}
    assert sorted(m.value for m in messages) == sorted(encode_event(e) for e in campaign())
    assert list(source) == messages  # iterating reads the same order
    # Each page names the job its last message belongs to, in job order.
    assert [p.open_job for p in pages] == [decode_event(p.messages[-1].value).job_id for p in pages]
    assert [p.open_job for p in pages] == sorted(p.open_job for p in pages)


def test_replay_in_job_order_holds_only_running_jobs_and_still_agrees_row_for_row(store: Any) -> None:
    """Jobs whose events are all folded leave memory between pages; a running one stays until the end, so the
    watermark of later pages makes it lost exactly as in the live tables."""
    db = store.jobprov_database
    start = ms(T0)
    stuck = [JobSubmitted(name="stuck", kind="batch"), JobStarted(host="h1", os="linux", kernel="6.1", cwd="/w")]
    running = [
        Event(f"aaa-running-{seq}", "aaa-running", type(p).__name__, start + seq, start + seq, PRODUCER, seq, payload=p)
        for seq, p in enumerate(stuck, 1)
    ]
    processor = Processor(ClickHouseSink(store, db), ListDeadLetters(), FoldContext())
    log = [*running, *campaign()]
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(log)])
    live, shadow = str(db), f"{db}_shadow"
    assert store.query(f"SELECT status FROM {live}.jobs FINAL WHERE job_id = 'aaa-running'").result_rows == [("lost",)]

    report = replay(from_events_table(store, live), store, shadow, batch=5, progress=False)
    assert report.events == len(log)
    jobs = len({e.job_id for e in log})
    # At most the running job, the one page's jobs (5 events: up to 5 jobs) and the job carried over from the last.
    assert report.jobs_in_memory_peak <= 7 < jobs
    result = verify(store, live, shadow)
    assert result.clean, result.differences
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_a_write_that_fails_beside_the_fold_stops_the_replay_with_the_reason_and_a_new_one_starts_over(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batches are written by a thread of their own: a store error there reaches the caller with its reason,
    the read-ahead and the writer stop (no hang), and replaying again gives the clean result."""
    live = _live(store)
    shadow = f"{live}_shadow"
    writers: list[_CutWriter] = []

    def cut_connection(client: Any) -> Any:
        writers.append(_CutWriter(real_connection(client), cut=3))
        return writers[-1]

    real_connection = replay_module.second_connection
    monkeypatch.setattr(replay_module, "second_connection", cut_connection)
    with pytest.raises(SinkError, match="the worker was killed"):
        replay(from_events_table(store, live), store, shadow, batch=20, progress=False)
    assert any(w.inserts == 3 for w in writers)  # it failed at the cut, after writing what came before
    monkeypatch.undo()

    assert replay(from_events_table(store, live), store, shadow, batch=20, progress=False).events == len(campaign())
    result = verify(store, live, shadow)
    assert result.clean, result.differences
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def _buckets(store: Any, database: str) -> list[tuple[str, str, dict[str, str], str | None]]:
    rows = store.query(f"SELECT metric, bucket, keys, unit FROM {database}.buckets FINAL ORDER BY metric, bucket")
    return [(metric, bucket, dict(keys), unit) for metric, bucket, keys, unit in rows.result_rows]


def test_replay_rebuilds_the_buckets_table(store: Any) -> None:
    live = _live(store)
    shadow = f"{live}_shadow"
    replay(from_events_table(store, live), store, shadow, progress=False)
    assert len(_buckets(store, live)) == 4
    assert _buckets(store, shadow) == _buckets(store, live)
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_a_swap_brings_the_rebuilt_buckets_along(store: Any) -> None:
    live = _live(store)
    shadow = f"{live}_shadow"
    registry = ComparabilityRegistry(default_keys=("dataset",), label="coarser")
    replay(from_events_table(store, live), store, shadow, FoldContext(registry=registry), progress=False)
    result = verify(store, live, shadow)
    assert "buckets" in {d.table for d in result.differences}
    swap(store, live, shadow, result, force=True)
    coarse = {("AM1", "cfht"), ("AM1", "hsc")}
    assert {(b[0], b[2]["dataset"]) for b in _buckets(store, live) if b[0] == "AM1"} == coarse
    assert all(set(b[2]) == {"dataset"} for b in _buckets(store, live))
    lines = series(Store(store, live), "AM1")
    assert sorted(line.label["dataset"] for line in lines) == ["cfht", "hsc"]
    assert all(set(line.label) == {"dataset"} for line in lines)
    # What the live pipeline writes after the swap lands in the same buckets, no duplicates.
    processor = Processor(ClickHouseSink(store, live), ListDeadLetters(), FoldContext(registry=registry))
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(campaign())])
    assert {(b[0], b[2]["dataset"]) for b in _buckets(store, live) if b[0] == "AM1"} == coarse
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_a_new_registry_shows_up_as_differences_and_needs_force(store: Any) -> None:
    live = _live(store)
    shadow = f"{live}_shadow"
    registry = ComparabilityRegistry(default_keys=("dataset",), label="coarser")
    replay(from_events_table(store, live), store, shadow, FoldContext(registry=registry), progress=False)
    result = verify(store, live, shadow)
    assert {d.table for d in result.differences} >= {"metric_points", "provenance"}
    with pytest.raises(JobprovError, match="refusing to swap"):
        swap(store, live, shadow, result)
    swap(store, live, shadow, result, force=True)
    versions = store.query(f"SELECT DISTINCT registry_version FROM {live}.metric_points FINAL").result_rows
    assert versions == [(registry.version,)]
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_replay_from_spool_files(store: Any, tmp_path: Any) -> None:
    from jobprov.emitters.base import Framed
    from jobprov.emitters.spool import SpoolTransport

    events = campaign()
    spool = SpoolTransport(tmp_path / "spool", segment_bytes=20_000)
    spool.send([Framed(e.job_id, encode_event(e), e.event_id) for e in events])
    spool.close(1)
    live = _live(store)
    shadow = f"{live}_fromspool"
    migrate(store, Target(shadow))
    assert replay(from_spool(str(tmp_path / "spool")), store, shadow, progress=False).events == len(events)
    assert verify(store, live, shadow).clean
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_replay_cli_verifies_and_swaps(store: Any) -> None:
    import json

    from click.testing import CliRunner

    from jobprov.cli.main import cli
    from tests.integration.conftest import _CHDB_STORE

    live = _live(store)
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": live}
    result = CliRunner().invoke(
        cli, ["replay", "--store", f"chdb://{_CHDB_STORE[0]}", "--verify", "--swap"], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["events"] == len(campaign()) and out["differences"] == [] and out["swapped"] is True
    assert 1 <= out["jobs_in_memory_peak"] <= len({e.job_id for e in campaign()})
    # Not a terminal: plain progress lines, with the share done and an ETA (the events table knows its size).
    assert f"replay: {len(campaign()):,} events" in result.stderr
    assert f"100% of {len(campaign()):,}, ETA 0 s" in result.stderr
    store.command(f"DROP DATABASE IF EXISTS {live}_replay")


def test_replay_from_a_topic_ends_on_idle_not_watermarks(store: Any, kafka: Any) -> None:
    from confluent_kafka import Producer

    from jobprov.stream_processors.replay import from_topic
    from tests.integration.kafka_helpers import create_topic

    topic = create_topic(kafka.bootstrap, f"replay-{store.jobprov_database[-20:]}", partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 50, "log_level": 0})
    events = campaign()
    for e in events:
        producer.produce(topic, encode_event(e), e.job_id)
    producer.flush(30)
    live = _live(store)
    shadow = f"{live}_fromtopic"
    assert replay(from_topic(kafka.bootstrap, topic, idle_timeout_s=3), store, shadow, progress=False).events == len(
        events
    )
    assert verify(store, live, shadow).clean
    store.command(f"DROP DATABASE IF EXISTS {shadow}")


def test_a_bucket_left_behind_by_late_provenance_is_no_difference(store: Any) -> None:
    """Live, a flush fell between a job's points and the provenance that moved them: the provisional bucket keeps a
    row in `buckets`. The replay folds the job in one batch and never writes it. Both hold the same points."""
    from tests.integration.test_clickhouse_sink import _job

    live = store.jobprov_database
    processor = Processor(ClickHouseSink(store, live), ListDeadLetters(), FoldContext())
    for i, event in enumerate(_job("late", "hsc", [1.0, 2.0], late_provenance=True)):
        processor.process_batch([RawEvent(encode_event(event), "events", 0, i)])  # a flush per event
    shadow = f"{live[:50]}_shadow"
    replay(from_events_table(store, live), store, shadow, progress=False)
    try:
        rows = {db: store.query(f"SELECT count() FROM {db}.buckets FINAL").result_rows[0][0] for db in (live, shadow)}
        assert rows[live] == rows[shadow] + 1, "the live store kept the provisional bucket's row"
        verification = verify(store, live, shadow)
        assert verification.clean, verification.differences
    finally:
        store.command(f"DROP DATABASE IF EXISTS {shadow}")
