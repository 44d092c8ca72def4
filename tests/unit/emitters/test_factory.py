"""Transports are chosen by URL; the off switch really sends nothing; the bare install stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jobprov.emitters.emitter import create_emitter
from jobprov.emitters.factory import make_transport
from jobprov.emitters.job import Job
from jobprov.emitters.kafka import KafkaTransport
from jobprov.emitters.noop import NoopTransport
from jobprov.emitters.spool import SpoolTransport
from jobprov.errors import ConfigError
from jobprov.schemas.models import MetricMeasured
from jobprov.settings import load_emitter_settings


def test_urls_choose_transports(tmp_path: Path) -> None:
    def make(**kw: object) -> object:
        return make_transport(load_emitter_settings({"spool_dir": str(tmp_path / "s"), **kw}, env={}))

    assert isinstance(make(url="noop://"), NoopTransport)
    assert isinstance(make(url=(tmp_path / "spool").as_uri()), SpoolTransport)
    assert isinstance(make(url="kafka://127.0.0.1:1/events"), KafkaTransport)
    assert isinstance(make(url="kafka://127.0.0.1:1/events", enabled=False), NoopTransport)
    with pytest.raises(ConfigError, match="url"):
        make(url="kafka://127.0.0.1:1/")


def test_disabled_emitter_records_nothing_anywhere(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    settings = load_emitter_settings(
        {"url": "kafka://127.0.0.1:1/events", "enabled": False, "spool_dir": str(spool), "capture_packages": False},
        env={},
    )
    emitter = create_emitter(settings)
    with Job(name="quiet", emitter=emitter) as job:
        job.metric("AM1", 1.0)
    report = emitter.close()
    assert (report.delivered, report.spooled, report.lost) == (0, 0, 0)
    assert not spool.exists() or not any(spool.iterdir())


def test_the_job_api_does_not_import_the_heavy_parts() -> None:
    code = (
        "import sys, jobprov, jobprov.emitters.job, jobprov.cli.main\n"
        "heavy = [m for m in ('faust', 'clickhouse_connect', 'chdb', 'aiokafka') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sequence_numbers_are_counted_per_job(tmp_path: Path) -> None:
    import fastavro

    from jobprov.schemas.models import MetricMeasured

    settings = load_emitter_settings({"url": (tmp_path / "spool").as_uri()}, env={})
    emitter = create_emitter(settings)
    for i in range(10):
        emitter.emit("job-a" if i % 2 else "job-b", MetricMeasured(name="m", value=float(i)))
    emitter.close()
    seqs: dict[str, list[int]] = {}
    for path in (tmp_path / "spool").iterdir():
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                seqs.setdefault(record["job_id"], []).append(record["seq"])
    assert seqs == {"job-a": [1, 2, 3, 4, 5], "job-b": [1, 2, 3, 4, 5]}, (
        "no false gaps when one emitter serves two jobs"
    )


def test_a_spool_that_cannot_be_created_keeps_the_configured_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = "kafka://127.0.0.1:1/configured-topic"
    settings = load_emitter_settings(
        {"url": url, "spool_dir": str(blocker / "spool"), "capture_packages": False}, env={}
    )
    emitter = create_emitter(settings)
    try:
        assert emitter.settings.url == url
        assert isinstance(emitter.transport, KafkaTransport)
        assert emitter.transport.topic == "configured-topic"
        assert emitter.transport._fallback is None
        err = capsys.readouterr().err
        assert f"cannot create spool directory {blocker / 'spool'}" in err
        assert f"events go to {url} with no spool" in err
        assert "9092" not in err
    finally:
        emitter.close(0.5)


def test_unreadable_configuration_goes_to_the_spool_not_to_a_default_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("JOBPROV_FLUSH_TIMEOUT_S", "not a number")
    emitter = create_emitter()
    emitter.emit("job-1", MetricMeasured(name="AM1", value=1.0))
    report = emitter.close()
    assert isinstance(emitter.transport, SpoolTransport) and report.spooled == 1
    assert emitter.settings.url.startswith("file://")
    err = capsys.readouterr().err
    assert "configuration error: JOBPROV_FLUSH_TIMEOUT_S" in err
    assert f"events go to the spool at {tmp_path / 'state' / 'jobprov' / 'spool'}" in err
    assert "9092" not in err
