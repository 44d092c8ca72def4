"""Helpers for stream processor tests: run workers as real processes, read derived records, fold expectations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jobprov.embedded.tansu import free_port
from jobprov.schemas.models import Event
from jobprov.stream_processors.fold import FoldContext, attempt_snapshots, fold, snapshot
from jobprov.stream_processors.records import Record, content_of, from_json_dict, materialize
from jobprov.stream_processors.state import JobFoldState


def start_worker(
    bootstrap: str, topic: str, partitions: int, workdir: Path, name: str = "w", sink_url: str | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    metrics_port = free_port()
    env.update(
        JOBPROV_PROCESSOR_SOURCE_URL=f"kafka://{bootstrap}/{topic}",
        JOBPROV_PROCESSOR_PARTITIONS=str(partitions),
        JOBPROV_PROCESSOR_METRICS_PORT=str(metrics_port),
        JOBPROV_PROCESSOR_APP_ID=f"proc-{topic}",
        JOBPROV_PROCESSOR_DERIVED_TOPIC=f"{topic}.derived",
        JOBPROV_PROCESSOR_DEAD_LETTER_TOPIC=f"{topic}.dlq",
        JOBPROV_PROCESSOR_BATCH_SIZE="200",
    )
    if sink_url:
        env["JOBPROV_PROCESSOR_SINK_URL"] = sink_url
    log = (workdir / f"worker-{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobprov.cli.main", "process", "--log-level", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.metrics_port = metrics_port  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def records_of(messages: Iterable[Any]) -> list[Record]:
    return [from_json_dict(json.loads(m.value())) for m in messages]


def latest_by_key(records: Iterable[Record]) -> dict[tuple[str, tuple[str, ...]], Record]:
    """What an idempotent sink keeps (``materialize``: per key the record with the highest state_version, bucket
    moves applied), version zeroed (versions depend on arrival order; content must not)."""
    return {k: content_of(r) for k, r in materialize(records).items()}


def expected_records(
    events: Iterable[Event], context: FoldContext | None = None
) -> dict[tuple[str, tuple[str, ...]], Record]:
    """The same log folded in one process: outputs plus a final snapshot per job."""
    context = context or FoldContext()
    states: dict[str, JobFoldState] = {}
    outputs: list[Record] = []
    for event in events:
        state, records = fold(states.get(event.job_id), event, context)
        states[event.job_id] = state
        outputs += records
    for state in states.values():
        if state.is_job():
            job = snapshot(state, None, context)
            outputs += [job, *attempt_snapshots(state, job)]
    return latest_by_key(outputs)


class ListSink:
    """The sink contract kept in a list (for computing expectations in-process)."""

    name = "list"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, records: Iterable[Record]) -> None:
        self.records += list(records)

    def flush(self, timeout: float) -> None:
        return None

    def detach(self) -> ListSink:
        return self

    def close(self) -> None:
        return None


class ListDeadLetters:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, int]] = []

    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None:
        self.items.append((reason, partition, offset))

    def flush(self, timeout: float) -> None:
        return None


def expected_from_raw(messages: Iterable[Any]) -> tuple[dict[tuple[str, tuple[str, ...]], Record], int]:
    """What the pipeline must end with, computed by the same Processor in this process: (records, dead letters)."""
    from jobprov.stream_processors.processor import Processor, RawEvent

    sink, dead = ListSink(), ListDeadLetters()
    processor = Processor(sink, dead, FoldContext(), allowed_lateness_ms=60_000)
    processor.process_batch([RawEvent(m.value() or b"", m.topic(), m.partition(), m.offset()) for m in messages])
    return latest_by_key(sink.records), len(dead.items)


class Collector:
    """Keeps a consumer open on a topic and accumulates what arrives."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        import uuid

        from confluent_kafka import Consumer

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"collect-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "log_level": 0,
            }
        )
        self._consumer.subscribe([topic])
        self.messages: list[Any] = []

    def poll_for(self, seconds: float) -> None:
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._consumer.poll(0.1)
            if msg is not None and not msg.error():
                self.messages.append(msg)

    def close(self) -> None:
        self._consumer.close()


def query_store(path: Path, sql: str) -> list[list[Any]]:
    """Rows of a query on an embedded store, from a separate process (chdb opens one store per process)."""
    code = (
        "import json, sys\n"
        "from jobprov.sinks.clickhouse.client import connect\n"
        f"rows = connect('chdb://{path}').query(sys.argv[1]).result_rows\n"
        "print(json.dumps([list(r) for r in rows], default=str))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, sql], capture_output=True, text=True, timeout=120, check=True)
    result: list[list[Any]] = json.loads(done.stdout)
    return result


def fold_into(client: Any, events: Iterable[Event], context: FoldContext | None = None) -> Any:
    """``events`` folded by the real processor into the test's database (the ``store`` fixture's client, whose
    ``jobprov_database`` names it), in one batch; returns a query Store on it. Nothing may end in dead letters."""
    from jobprov.query.store import Store
    from jobprov.schemas.wire import encode_event
    from jobprov.sinks.clickhouse.sink import ClickHouseSink
    from jobprov.stream_processors.processor import Processor, RawEvent

    dead = ListDeadLetters()
    processor = Processor(ClickHouseSink(client, client.jobprov_database), dead, context or FoldContext())
    processor.process_batch([RawEvent(encode_event(e), "events", 0, i) for i, e in enumerate(events)])
    assert dead.items == [], dead.items
    return Store(client, client.jobprov_database)
