"""Damaged spool segments against a real broker: every readable event is sent once, the rest is quarantined.

Each test damages a segment the way a disk or a crash does (bytes overwritten mid-file, a file cut short),
drains it with `jobprov spool drain`, and counts what reached the topic: sent = recovered, 0 duplicates.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import fastavro
import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.emitters.spool import QUARANTINE, SEALED, SpoolTransport, read_segment, spool_status, write_records
from jobprov.schemas import registry
from jobprov.schemas.models import Event, to_avro
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, events_of
from tests.unit.emitters.test_spool import framed, make_event


def _drain(kafka: Endpoint, topic: str, spool: Path) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(
        cli,
        ["spool", "drain", "--timeout", "30"],
        env={"JOBPROV_SPOOL_DIR": str(spool), "JOBPROV_URL": kafka.url(topic)},
    )
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _recoverable(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return [r["event_id"] for r in read_segment(fh).records]


def _check_drained(kafka: Endpoint, topic: str, spool: Path, segment: Path, expected: list[str]) -> None:
    code, report, stderr = _drain(kafka, topic, spool)
    assert code == 1, "a quarantined segment is not a clean drain"
    assert report["sent"] == len(expected) and report["kept"] == 0
    assert "quarantined" in stderr and segment.name in stderr

    sent = [e.event_id for e in events_of(consume(kafka.bootstrap, topic, expected=len(expected), idle=2.0))]
    assert len(sent) == len(set(sent)), "no event twice"
    assert sorted(sent) == sorted(expected), "sent = recovered"

    quarantined = spool / QUARANTINE / segment.name
    assert quarantined.exists(), "the damaged file is kept for inspection, not deleted"
    note = (spool / QUARANTINE / f"{segment.name}.txt").read_text()
    assert f"{len(expected)} readable events recovered" in note
    assert oct(os.stat(quarantined.parent).st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(spool / QUARANTINE / f"{segment.name}.txt").st_mode & 0o777) == oct(0o600)
    assert spool_status(spool)["sealed_segments"] == 0
    assert spool_status(spool)["quarantined_segments"] == 1

    # A second drain does not send the quarantined segment again.
    code, report, _ = _drain(kafka, topic, spool)
    assert code == 0 and report["sent"] == 0 and report["quarantined"] == []


def test_corrupt_bytes_mid_segment(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    events: list[Event] = [make_event(i) for i in range(1, 101)]
    transport = SpoolTransport(spool)
    ends = []
    for b in range(10):  # ten sends, ten blocks of ten events
        transport.send(framed(events[b * 10 : (b + 1) * 10]))
        ends.append(next(spool.iterdir()).stat().st_size)
    transport.close(1.0)
    [segment] = [p for p in spool.iterdir() if p.name.endswith(SEALED)]
    data = bytearray(segment.read_bytes())
    start = (ends[3] + ends[4]) // 2  # inside the fifth block
    data[start : start + 32] = os.urandom(32)
    segment.write_bytes(bytes(data))

    expected = [e.event_id for e in events[:40] + events[50:]]
    assert _recoverable(segment) == expected, "the damage costs its own block only"
    _check_drained(kafka, topic, spool, segment, expected)


def test_truncated_segment(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    events = [make_event(i) for i in range(1, 101)]
    records = [to_avro(e) for e in events]
    segment = write_records(spool, records)  # one block of 100 events
    # Where each record ends in the file: the block's data sits just before the closing 16-byte sync marker.
    lengths = []
    for record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, registry.current().parsed, record)
        lengths.append(len(buf.getvalue()))
    data_start = segment.stat().st_size - 16 - sum(lengths)
    ends = list(itertools.accumulate(lengths, initial=data_start))[1:]
    cut = data_start + sum(lengths) * 6 // 10
    os.truncate(segment, cut)

    expected = [e.event_id for e, end in zip(events, ends, strict=True) if end <= cut]
    assert len(expected) >= 55
    assert _recoverable(segment) == expected, "every record written completely before the cut"
    _check_drained(kafka, topic, spool, segment, expected)


def test_the_next_jobs_background_drain_quarantines_too(
    kafka: Endpoint, topic: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from jobprov.emitters.emitter import create_emitter
    from jobprov.schemas.models import MetricMeasured
    from jobprov.settings import load_emitter_settings

    spool = tmp_path / "spool"
    spool.mkdir()
    events = [make_event(i) for i in range(1, 31)]
    segment = write_records(spool, [to_avro(e) for e in events])
    os.truncate(segment, segment.stat().st_size - 100)
    expected = _recoverable(segment)
    assert 0 < len(expected) < 30

    settings = load_emitter_settings(
        {"url": kafka.url(topic), "spool_dir": str(spool), "capture_packages": False, "capture_git": False}, env={}
    )
    emitter = create_emitter(settings)
    assert emitter._drainer is not None
    emitter._drainer.join(20)  # this test is about what the drain does, not about how long a job waits
    emitter.emit("job-now", MetricMeasured(name="AM1", value=1.0))
    assert emitter.close().delivered == 1

    sent = events_of(consume(kafka.bootstrap, topic, expected=len(expected) + 1, idle=2.0))
    ids = [e.event_id for e in sent if e.job_id != "job-now"]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert (spool / QUARANTINE / segment.name).exists()
    assert "damaged spool segment quarantined" in capfd.readouterr().err
