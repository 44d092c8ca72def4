"""`jobprov emit ...` and `jobprov config show` through click's test runner, into a file:// spool."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from jobprov.cli.main import cli
from jobprov.emitters.spool import claim_segments, read_segment
from jobprov.schemas.models import Annotation, ArtifactUsed, Event, JobFinished, MetricMeasured, from_avro, from_millis

PASSWORD = "Tr0ub4dor&3-correct-horse"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No JOBPROV_* from the developer's shell leaks into the commands under test."""
    for name in list(os.environ):
        if name.startswith("JOBPROV_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def run(spool: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--url", f"file://{spool}", *args], env=env)


def spooled(spool: Path) -> list[Event]:
    events: list[Event] = []
    for segment in claim_segments(spool):
        try:
            events += [from_avro(Event, r) for r in read_segment(segment.handle).records]
        finally:
            segment.release()
    return events


def test_emit_metric(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2", "--unit", "mas", "--tag", "band=r", "--job-id", "j1")
    assert result.exit_code == 0, result.output
    [event] = spooled(spool)
    assert event.job_id == "j1"
    assert event.event_type == "MetricMeasured"
    assert event.payload == MetricMeasured(name="AM1", value=3.2, unit="mas", tags={"band": "r"})
    assert event.producer.name == "jobprov-cli"
    assert event.attempt == 1


def test_emit_metric_job_from_environment(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "1", env={"JOBPROV_JOB_ID": "outer", "JOBPROV_ATTEMPT": "2"})
    assert result.exit_code == 0, result.output
    [event] = spooled(spool)
    assert (event.job_id, event.attempt) == ("outer", 2)


def test_emit_metric_keys_and_step(spool: Path) -> None:
    result = run(
        spool, "emit", "metric", "AM1", "1", "--key", "dataset", "--key", "band", "--step", "s", "--job-id", "j"
    )
    assert result.exit_code == 0, result.output
    [event] = spooled(spool)
    assert event.payload.comparability_keys == ["dataset", "band"]
    assert event.payload.step == "s"


def test_missing_job_id(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2")
    assert result.exit_code == 2
    assert "no job" in result.output
    assert spooled(spool) == []


def test_bad_tag(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2", "--tag", "band", "--job-id", "j1")
    assert result.exit_code == 2
    assert "--tag" in result.output


def test_time_is_honoured(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2", "--job-id", "j1", "--time", "2024-01-02T03:04:05Z")
    assert result.exit_code == 0, result.output
    [event] = spooled(spool)
    assert from_millis(event.event_time) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T05:04:05.678+02:00", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
        ("1704164645", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("1704164645.5", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
    ],
)
def test_time_forms(spool: Path, raw: str, expected: datetime) -> None:
    result = run(spool, "emit", "metric", "AM1", "1", "--job-id", "j1", "--time", raw)
    assert result.exit_code == 0, result.output
    [event] = spooled(spool)
    assert from_millis(event.event_time) == expected


@pytest.mark.parametrize("raw", ["2024-01-02T03:04:05", "yesterday"])
def test_bad_time_is_a_usage_error(spool: Path, raw: str) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2", "--job-id", "j1", "--time", raw)
    assert result.exit_code == 2
    assert "--time" in result.output
    assert spooled(spool) == []


def test_emit_artifact_and_annotation(spool: Path) -> None:
    assert run(spool, "emit", "artifact", "s3://b/raw.fits", "--used", "--size", "12", "--job-id", "j").exit_code == 0
    assert run(spool, "emit", "annotate", "reviewed", "yes", "--author", "bob", "--job-id", "j").exit_code == 0
    assert run(spool, "emit", "finished", "--status", "failed", "--exit-code", "3", "--job-id", "j").exit_code == 0
    payloads = sorted((e.payload for e in spooled(spool)), key=lambda p: type(p).__name__)
    assert payloads == [
        Annotation(key="reviewed", value="yes", author="bob"),
        ArtifactUsed(uri="s3://b/raw.fits", size_bytes=12),
        JobFinished(status="failed", exit_code=3),
    ]


def test_artifact_needs_a_direction(spool: Path) -> None:
    result = run(spool, "emit", "artifact", "s3://b/raw.fits", "--job-id", "j")
    assert result.exit_code == 2
    assert "--used or --produced" in result.output


# --- jsonl ------------------------------------------------------------------------------------------------


def _line(**item: object) -> str:
    return json.dumps(item)


def test_jsonl_good(spool: Path, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(
        "\n".join(
            [
                _line(
                    type="JobSubmitted",
                    job_id="old-1",
                    time="2023-05-01T10:00:00Z",
                    payload={"name": "n", "kind": "batch"},
                ),
                _line(
                    type="MetricMeasured",
                    job_id="old-1",
                    time="2023-05-01T10:30:00.250+00:00",
                    payload={"name": "AM1", "value": 3.5, "tags": {"band": "r"}},
                ),
                "",
                _line(type="JobFinished", job_id="old-1", time=1682938800, attempt=2, payload={"status": "succeeded"}),
            ]
        )
        + "\n"
    )
    result = run(spool, "emit", "jsonl", str(source))
    assert result.exit_code == 0, result.output
    assert "emitted 3 events" in result.output
    events = spooled(spool)
    assert [e.event_type for e in events] == ["JobSubmitted", "MetricMeasured", "JobFinished"]
    assert [from_millis(e.event_time) for e in events] == [
        datetime(2023, 5, 1, 10, 0, tzinfo=UTC),
        datetime(2023, 5, 1, 10, 30, 0, 250000, tzinfo=UTC),
        datetime(2023, 5, 1, 11, 0, tzinfo=UTC),
    ]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].payload == MetricMeasured(name="AM1", value=3.5, tags={"band": "r"})
    assert events[2].attempt == 2


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        _line(type="NoSuchEvent", job_id="j", payload={}),
        _line(type="MetricMeasured", payload={"name": "m", "value": 1.0}),
        _line(type="MetricMeasured", job_id="j", payload={"name": "m", "value": 1.0, "unti": "mas"}),
        _line(type="StepFinished", job_id="j", payload={"name": "s"}),
        _line(type="MetricMeasured", job_id="j", time="2023-05-01T10:00:00", payload={"name": "m", "value": 1.0}),
        _line(type="MetricMeasured", job_id="j", attempt=0, payload={"name": "m", "value": 1.0}),
        _line(type="MetricMeasured", job_id="j", extra=1, payload={"name": "m", "value": 1.0}),
        "[1, 2]",
    ],
    ids=[
        "not json",
        "unknown type",
        "no job id",
        "misspelt payload field",
        "required payload field missing",
        "naive time",
        "attempt 0",
        "extra key",
        "array",
    ],
)
def test_jsonl_one_bad_line_emits_nothing(spool: Path, tmp_path: Path, bad: str) -> None:
    good = _line(type="MetricMeasured", job_id="j", time="2023-05-01T10:00:00Z", payload={"name": "m", "value": 1.0})
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([good, good, bad, good]) + "\n")
    result = run(spool, "emit", "jsonl", str(source))
    assert result.exit_code == 2, result.output
    assert "line 3:" in result.output
    assert "line 1:" not in result.output
    assert "line 4:" not in result.output
    assert "nothing emitted" in result.output
    assert spooled(spool) == []


def test_jsonl_payload_missing_a_required_field(spool: Path, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(_line(type="MetricMeasured", job_id="j", payload={"name": "m"}) + "\n")
    result = run(spool, "emit", "jsonl", str(source))
    assert result.exit_code == 2
    assert "line 1" in result.output
    assert spooled(spool) == []


# --- configuration ----------------------------------------------------------------------------------------


def test_config_show_never_prints_the_password(spool: Path) -> None:
    result = run(
        spool, "config", "show", env={"JOBPROV_KAFKA_SASL_PASSWORD": PASSWORD, "JOBPROV_KAFKA_SASL_USERNAME": "u"}
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    shown = json.loads(result.output)
    assert shown["kafka_sasl_username"] == "u"
    assert shown["url"] == f"file://{spool}"


def test_config_show_from_a_file(tmp_path: Path) -> None:
    config = tmp_path / "jobprov.toml"
    config.write_text(f'[emitter]\nurl = "noop://"\nkafka_sasl_password = "{PASSWORD}"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "show"])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert json.loads(result.output)["url"] == "noop://"


def test_bad_config_value_is_a_usage_error(spool: Path) -> None:
    result = run(spool, "emit", "metric", "AM1", "3.2", "--job-id", "j1", env={"JOBPROV_FLUSH_TIMEOUT_S": "x"})
    assert result.exit_code == 2
    assert "JOBPROV_FLUSH_TIMEOUT_S" in result.output
    assert spooled(spool) == []


def test_bad_config_value_for_config_show(spool: Path) -> None:
    result = run(spool, "config", "show", env={"JOBPROV_FLUSH_TIMEOUT_S": "x"})
    assert result.exit_code == 2
    assert "JOBPROV_FLUSH_TIMEOUT_S" in result.output


def test_unknown_config_variable_is_a_usage_error(spool: Path) -> None:
    result = run(spool, "config", "show", env={"JOBPROV_FLUSH_TIMOUT_S": "1"})
    assert result.exit_code == 2
    assert "JOBPROV_FLUSH_TIMOUT_S" in result.output


def test_bad_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["--url", "ftp://x/y", "emit", "metric", "AM1", "1", "--job-id", "j"])
    assert result.exit_code == 2
    assert "url" in result.output


# --- values the pipeline could not take: refused with the rule named, nothing sent ------------------------


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (["AM1", "nan"], "metric values must be finite numbers"),
        (["AM1", "inf"], "metric values must be finite numbers"),
        (["--", "AM1", "-inf"], "metric values must be finite numbers"),
        (["", "1"], "metric names must be non-empty and free of control characters"),
        (["AM\x001", "1"], "metric names must be non-empty and free of control characters"),
        (["AM1\n", "1"], "metric names must be non-empty and free of control characters"),
        (["AM1", "1", "--time", "1e15"], "event times must lie between 1900-01-01 and 2299-12-31 UTC"),
        (["AM1", "1", "--time", "-1e10"], "event times must lie between 1900-01-01 and 2299-12-31 UTC"),
        (["AM1", "1", "--time", "2400-01-01T00:00:00Z"], "event times must lie between 1900-01-01 and 2299-12-31"),
    ],
)
def test_emit_metric_refuses_what_the_pipeline_cannot_take(spool: Path, args: list[str], rule: str) -> None:
    result = run(spool, "emit", "metric", "--job-id", "j1", *args)
    assert result.exit_code == 2, result.output
    assert rule in result.output
    assert "Traceback" not in result.output
    assert spooled(spool) == []


@pytest.mark.parametrize(
    ("payload", "time", "rule"),
    [
        ('{"name": "m", "value": NaN}', None, "metric values must be finite numbers"),
        ('{"name": "m", "value": -Infinity}', None, "metric values must be finite numbers"),
        ('{"name": "", "value": 1.0}', None, "metric names must be non-empty"),
        ('{"name": "m", "value": 1.0}', 1e15, "event times must lie between"),
    ],
)
def test_jsonl_names_the_line_of_an_invalid_event(
    spool: Path, tmp_path: Path, payload: str, time: float | None, rule: str
) -> None:
    good = _line(type="MetricMeasured", job_id="j", payload={"name": "m", "value": 1.0})
    bad = json.dumps({"type": "MetricMeasured", "job_id": "j", "time": time, "payload": "@"}).replace('"@"', payload)
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([good, bad, good]) + "\n")
    result = run(spool, "emit", "jsonl", str(source))
    assert result.exit_code == 2, result.output
    assert "line 2:" in result.output and rule in result.output
    assert "line 1:" not in result.output and "line 3:" not in result.output
    assert spooled(spool) == []


def test_jsonl_with_a_byte_that_is_not_utf8(spool: Path, tmp_path: Path) -> None:
    good = _line(type="MetricMeasured", job_id="j", payload={"name": "m", "value": 1.0}).encode()
    source = tmp_path / "events.jsonl"
    source.write_bytes(good + b"\n" + good.replace(b'"m"', b'"m\xff"') + b"\n" + good + b"\n")
    result = run(spool, "emit", "jsonl", str(source))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "line 2: not UTF-8 (byte 0xff at column" in result.output
    assert spooled(spool) == []
