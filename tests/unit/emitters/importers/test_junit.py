"""JUnit XML -> records: statuses, times, messages, ids; every bad element named and nothing kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobprov.emitters.importers.junit import read_junit
from jobprov.emitters.importers.send import BadInputError, check, to_events
from jobprov.schemas.models import JobFinished, JobSubmitted, MetricMeasured, ProvenanceDeclared, StepFinished

SAMPLE = Path(__file__).parents[3] / "samples" / "junit-two-suites.xml"


def _records() -> list:  # type: ignore[type-arg]
    return read_junit(SAMPLE.read_bytes(), str(SAMPLE))


def test_one_job_per_suite_with_a_step_per_case() -> None:
    records = _records()
    jobs = sorted({r.job_id for r in records})
    assert jobs == ["junit-com.example.ParserTest-20260501T100100", "junit-pytest-20260501T100000"]
    steps = {(r.job_id, r.payload.name): r.payload for r in records if isinstance(r.payload, StepFinished)}
    pytest_job = "junit-pytest-20260501T100000"
    assert {name: s.status for (job, name), s in steps.items() if job == pytest_job} == {
        "tests.test_math::test_add": "succeeded",
        "tests.test_math::test_div": "failed",
        "tests.test_math::test_big": "skipped",
        "tests.test_io::test_read": "failed",
        "tests.test_io::test_write": "succeeded",
    }
    div = steps[(pytest_job, "tests.test_math::test_div")]
    assert (div.exception_type, div.exception_message) == ("AssertionError", "assert 0.5 == 0.25")
    read = steps[(pytest_job, "tests.test_io::test_read")]
    assert read.exception_type == "error" and "FileNotFoundError" in (read.exception_message or "")


def test_cases_are_laid_end_to_end_from_the_suite_timestamp() -> None:
    records = [r for r in _records() if r.job_id == "junit-pytest-20260501T100000"]
    finished = {r.payload.name: r.time for r in records if isinstance(r.payload, StepFinished)}
    t0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert (finished["tests.test_math::test_div"] - t0).total_seconds() == 1.5
    assert (finished["tests.test_io::test_write"] - t0).total_seconds() == 3.25
    job = next(r for r in records if isinstance(r.payload, JobFinished))
    assert (job.payload.status, job.payload.duration_ms) == ("failed", 3250)
    assert job.time == datetime(2026, 5, 1, 10, 0, 3, 250000, tzinfo=UTC)
    metrics = {r.payload.name: r.payload.value for r in records if isinstance(r.payload, MetricMeasured)}
    assert metrics == {"junit.tests": 5, "junit.failures": 1, "junit.errors": 1, "junit.skipped": 1, "junit.time": 3.25}


def test_properties_are_provenance_and_a_naive_timestamp_is_utc() -> None:
    records = [r for r in _records() if r.job_id.startswith("junit-com.example")]
    prov = next(r.payload for r in records if isinstance(r.payload, ProvenanceDeclared))
    assert prov.values == {"junit.suite": "com.example.ParserTest", "java.version": "21.0.2", "os.name": "Linux"}
    assert records[0].time == datetime(2026, 5, 1, 10, 1, tzinfo=UTC)
    job = next(r.payload for r in records if isinstance(r.payload, JobFinished))
    assert job.status == "succeeded"


def test_job_id_and_parent_options() -> None:
    single = b'<testsuite name="s" timestamp="2026-01-01T00:00:00Z"><testcase name="a"/></testsuite>'
    records = read_junit(single, "x.xml", job_id="ci-42-tests", parent_job_id="ci-42")
    assert {r.job_id for r in records} == {"ci-42-tests"}
    submitted = next(r.payload for r in records if isinstance(r.payload, JobSubmitted))
    assert submitted.parent_job_id == "ci-42" and submitted.kind == "ci"
    several = read_junit(SAMPLE.read_bytes(), "x.xml", job_id="ci-42")
    assert {r.job_id for r in several} == {"ci-42-pytest", "ci-42-com.example.ParserTest"}


def test_event_ids_are_stable_and_unique() -> None:
    first = [e.event_id for e in to_events(_records(), "junit", environ={})]
    second = [e.event_id for e in to_events(_records(), "junit", environ={})]
    assert first == second
    assert len(set(first)) == len(first)
    assert check(_records()) == []


def test_a_suite_without_timestamp_ends_when_the_file_was_written() -> None:
    data = b'<testsuite name="s" time="10"><testcase name="a" time="10"/></testsuite>'
    written = datetime(2026, 3, 1, 12, tzinfo=UTC)
    records = read_junit(data, "x.xml", written=written)
    assert records[0].time == datetime(2026, 3, 1, 11, 59, 50, tzinfo=UTC)
    assert records[-1].time == written
    with pytest.raises(BadInputError, match=r"testsuite\[1\] 's': no timestamp"):
        read_junit(data, "x.xml")


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (b"<testsuite name='s'><testcase", r"line 1, column \d+: not well-formed XML"),
        (b"<report/>", r"root element <report>"),
        (b"<testsuites/>", r"no <testsuite>"),
        (
            b"<testsuite name='s' timestamp='2026-01-01T00:00:00Z'><testcase name='a'/><testcase time='1'/>"
            b"<testcase name='c' time='soon'/></testsuite>",
            r"testsuite\[1\] 's' testcase\[2\]: <testcase> has no name(.|\n)*testcase\[3\]: time='soon'",
        ),
        (b"<testsuite name='s' timestamp='yesterday'/>", r"timestamp='yesterday' is not ISO 8601"),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite name="&a;"/>',
            r"refused: EntitiesForbidden",
        ),
    ],
)
def test_bad_input_names_the_element_and_keeps_nothing(xml: bytes, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        read_junit(xml, "bad.xml")
