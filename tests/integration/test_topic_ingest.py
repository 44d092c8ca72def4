"""`jobprov ingest openlineage-kafka|slurm-jobcomp` as real processes reading real topics: the real openlineage-python
KafkaTransport publishes, the consumer sends events to the events topic, the fold stores them, the query API reads
them; bad records are reported with their offsets and dead-lettered; committed offsets are not read again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from jobprov.query.backend import LocalBackend
from jobprov.query.store import Store
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, create_topic
from tests.integration.test_importers import _fold
from tests.integration.test_openlineage_ingest import PARENT, RUN_ID, _events

SAMPLES = Path(__file__).parents[1] / "samples"


def _ingest(
    kafka: Endpoint, events_topic: str, tmp_path: Path, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env.update({"JOBPROV_URL": kafka.url(events_topic), "JOBPROV_SPOOL_DIR": str(tmp_path / "spool"), **settings})
    # idle for 1 s, shorter than the group join (about 3 s): idleness counts from the assignment
    command = [sys.executable, "-m", "jobprov.cli.main", "ingest", *args, "--exit-when-idle", "1"]
    return subprocess.run([*command, "--session-timeout", "6"], env=env, capture_output=True, text=True, timeout=180)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(10) == 0


def _headers(message: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in message.headers() or []}


def test_openlineage_kafka_transport_events_become_a_job(
    kafka: Endpoint, topic: str, tmp_path: Path, store: Any
) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

    source = create_topic(kafka.bootstrap, f"openlineage-{uuid.uuid4().hex[:8]}", partitions=2)
    transport = KafkaTransport(KafkaConfig(config={"bootstrap.servers": kafka.bootstrap}, topic=source, flush=True))
    client = OpenLineageClient(transport=transport)
    start, fail = _events()
    client.emit(start)
    client.emit(start)  # a retry: changes nothing
    client.emit(fail)
    bad_json = b"{not json"
    no_run = b'{"eventType": "START", "eventTime": "2026-05-01T00:00:00Z", "run": {}, "job": {"name": "x"}}'
    # a shape the mapping does not foresee (a parent run that is not an object): reported, never a crash loop
    odd_run = {"runId": "r", "facets": {"parent": {"run": "x"}}}
    odd = json.dumps({"eventType": "START", "eventTime": "2026-05-01T00:00:00Z", "run": odd_run, "job": {"name": "x"}})
    odd_bytes = odd.encode()
    _produce(kafka.bootstrap, source, [bad_json, no_run, odd_bytes])

    done = _ingest(kafka, topic, tmp_path, "openlineage-kafka", "--topic", source)
    assert done.returncode == 0, done.stderr
    assert "read 6 records: 11 events sent, 3 bad records skipped" in done.stderr
    assert "cannot be read: AttributeError" in done.stderr
    assert f"{source}[" in done.stderr and "not JSON" in done.stderr and "run.runId: missing" in done.stderr

    dead = consume(kafka.bootstrap, f"{source}.dlq", expected=3)
    assert sorted(m.value() for m in dead) == sorted([bad_json, no_run, odd_bytes])
    for message in dead:
        headers = _headers(message)
        assert headers["jobprov-reason"] == "bad_record" and headers["jobprov-source-topic"] == source
        assert f"{source}[{headers['jobprov-source-partition']}]@{headers['jobprov-source-offset']}" in done.stderr

    messages = consume(kafka.bootstrap, topic, expected=11)
    assert len(messages) == 11
    _fold(store, messages)
    job = LocalBackend(Store(store, store.jobprov_database)).job(RUN_ID)
    assert (job["name"], job["kind"], job["status"], job["parent_job_id"]) == (
        "nightly_dag.reduce",
        "pipeline",
        "failed",
        PARENT,
    )
    assert job["exception_message"] == "disk full"
    assert job["provenance"]["openlineage.job_type.integration"] == "AIRFLOW"
    edges = {(e["relation"], e["src"], e["dst"]) for e in job["lineage"] if e["relation"] in ("used", "produced")}
    assert edges == {
        ("used", "artifact:s3://raw/hsc/visit-1.fits", f"job:{RUN_ID}"),
        ("produced", f"job:{RUN_ID}", "artifact:postgres://db:5432/warehouse.public.calexp"),
    }

    again = _ingest(kafka, topic, tmp_path, "openlineage-kafka", "--topic", source)
    assert again.returncode == 0, again.stderr
    assert "read 0 records" in again.stderr, "the first run committed what it read"


def test_slurm_jobcomp_records_become_jobs_with_attempts(
    kafka: Endpoint, topic: str, tmp_path: Path, store: Any
) -> None:
    source = create_topic(kafka.bootstrap, f"jobcomp-{uuid.uuid4().hex[:8]}")
    lines = (SAMPLES / "slurm-jobcomp.jsonl").read_bytes().splitlines()
    _produce(kafka.bootstrap, source, [*lines[:3], b'{"jobid": 77, "state": "COMPLETED"}', *lines[3:]])

    done = _ingest(kafka, topic, tmp_path, "slurm-jobcomp", "--topic", source, "--dead-letter-topic", "")
    assert done.returncode == 0, done.stderr
    assert "read 7 records: 28 events sent, 1 bad records skipped" in done.stderr
    assert f"{source}[0]@3: skipped a bad record: @submit: missing" in done.stderr

    messages = consume(kafka.bootstrap, topic, expected=28)
    assert len(messages) == 28
    _fold(store, messages)
    backend = LocalBackend(Store(store, store.jobprov_database))
    statuses = {}
    for job_id in ("1001", "1010_0", "1010_1", "1020", "1030"):
        job = backend.job(f"slurm-perlmutter-{job_id}")
        statuses[job_id] = (job["status"], job["attempts"], job["host"], job["parent_job_id"])
    assert statuses == {
        "1001": ("succeeded", 1, "node01", None),
        "1010_0": ("succeeded", 1, "node03", "slurm-perlmutter-1010"),
        "1010_1": ("failed", 1, "node04", "slurm-perlmutter-1010"),
        "1020": ("succeeded", 2, "node06", None),
        "1030": ("aborted", 1, None, None),
    }
    assert backend.job("slurm-perlmutter-1020")["attempt_statuses"] == {"1": "retried", "2": "succeeded"}


def test_events_neither_delivered_nor_spooled_commit_nothing(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    from openlineage.client.serde import Serde

    from jobprov.embedded.tansu import free_port

    source = create_topic(kafka.bootstrap, f"openlineage-{uuid.uuid4().hex[:8]}")
    start, _ = _events()
    _produce(kafka.bootstrap, source, [Serde.to_json(start).encode()])
    nowhere = {
        "JOBPROV_URL": f"kafka://127.0.0.1:{free_port()}/events",
        "JOBPROV_SPOOL_DIR": "/dev/null/spool",  # no spool can be made there
        "JOBPROV_DELIVERY_TIMEOUT_MS": "1000",
        "JOBPROV_FLUSH_TIMEOUT_S": "2",
    }
    args = ("openlineage-kafka", "--topic", source, "--bootstrap", kafka.bootstrap)
    failed = _ingest(kafka, topic, tmp_path, *args, **nowhere)
    assert failed.returncode == 1 and "events lost, nothing committed" in failed.stderr
    retried = _ingest(kafka, topic, tmp_path, *args)
    assert retried.returncode == 0, retried.stderr
    assert "read 1 records: 4 events sent" in retried.stderr, "the record was read again"
    assert len(consume(kafka.bootstrap, topic, expected=4)) == 4


def test_a_long_running_consumer_stops_on_sigterm_after_its_batch(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    import signal

    source = create_topic(kafka.bootstrap, f"jobcomp-{uuid.uuid4().hex[:8]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env.update(JOBPROV_URL=kafka.url(topic), JOBPROV_SPOOL_DIR=str(tmp_path / "spool"))
    command = [sys.executable, "-m", "jobprov.cli.main", "ingest", "slurm-jobcomp", "--topic", source]
    process = subprocess.Popen([*command, "--session-timeout", "6"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _produce(kafka.bootstrap, source, (SAMPLES / "slurm-jobcomp.jsonl").read_bytes().splitlines()[:1])
        assert len(consume(kafka.bootstrap, topic, expected=5, idle=1)) == 5, "sent while it runs"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "read 1 records: 5 events sent, 0 bad records skipped, 1 commits" in stderr
