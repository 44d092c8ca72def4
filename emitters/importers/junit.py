"""JUnit XML (the Ant/Jenkins format pytest, Maven Surefire, Gradle, go-junit-report... write) as jobs.

One job per ``<testsuite>``: submitted, started and finished at the suite's ``timestamp`` (plus its ``time``),
with a step per ``<testcase>`` (status ``failed`` for ``<failure>`` or ``<error>``, ``skipped`` for
``<skipped>``, else ``succeeded``; the failure's type and message on the step), the suite's ``<properties>``
as provenance, and the counts (tests, failures, errors, skipped) and total time as metrics.

JUnit gives a duration per test case but no start time: cases are laid end to end from the suite's start, in
file order. A timestamp without a UTC offset is read as UTC (pytest, Surefire and Gradle write UTC or an
offset); a suite without a timestamp starts at ``start`` if given, else when the file was written (the CLI passes
its modification time) less the suite's ``time``. The file is parsed with ``defusedxml`` (no entity
expansion, no external entities).

Every problem is collected and raised together as :class:`BadInputError`, naming the element
(``testsuite[2] 'unit' testcase[7]``); nothing of the file is imported then.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from jobprov.emitters.importers.send import BadInputError, Record
from jobprov.schemas.models import (
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    StepFinished,
    StepStarted,
)

IMPORTER = "junit"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def _parse(data: bytes, source: str) -> Any:
    try:
        from defusedxml import ElementTree
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("JUnit import needs defusedxml: pip install 'jobprov[importers]'") from exc
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise BadInputError(source, [f"line {line}, column {column}: not well-formed XML"]) from exc
    except Exception as exc:  # defusedxml's refusals (entities, DTDs) name what they refused
        raise BadInputError(source, [f"refused: {type(exc).__name__}: {exc}"]) from exc


def _seconds(element: Any, where: str, problems: list[str]) -> float:
    raw = element.get("time")
    if raw is None or not raw.strip():
        return 0.0
    try:
        value = float(raw.replace(",", ""))  # some writers group thousands: time="1,234.5"
    except ValueError:
        problems.append(f"{where}: time={raw!r} is not a number of seconds")
        return 0.0
    if not math.isfinite(value) or value < 0:
        problems.append(f"{where}: time={raw!r} is not a duration")
        return 0.0
    return value


def _timestamp(raw: str | None, where: str, problems: list[str]) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"{where}: timestamp={raw!r} is not ISO 8601")
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def default_job_id(suite_name: str, start: datetime | None, data: bytes) -> str:
    """``junit-<suite>-<start>``, or ``junit-<suite>-<digest of the file>`` when the suite has no timestamp."""
    name = _UNSAFE.sub("_", suite_name).strip("_") or "suite"
    when = start.astimezone(UTC).strftime("%Y%m%dT%H%M%S") if start else hashlib.sha256(data).hexdigest()[:12]
    return f"junit-{name}-{when}"


def _case(case: Any, where: str, problems: list[str]) -> tuple[str, str, str | None, str | None]:
    """(step name, outcome, exception type, message) of a test case; outcome is the JUnit element found:
    ``failure``, ``error``, ``skipped``, or ``passed``."""
    name = case.get("name")
    if not name:
        problems.append(f"{where}: <testcase> has no name")
        name = "?"
    classname = case.get("classname") or ""
    step = f"{classname}::{name}" if classname else name
    for tag in ("failure", "error", "skipped"):
        outcome = case.find(tag)
        if outcome is not None:
            message = outcome.get("message")
            if not message:
                lines = (outcome.text or "").strip().splitlines()
                message = lines[0] if lines else None
            exc_type = None if tag == "skipped" else outcome.get("type") or tag
            return step, tag, exc_type, message
    return step, "passed", None, None


_STATUS = {"failure": "failed", "error": "failed", "skipped": "skipped", "passed": "succeeded"}


def suite_records(
    suite: Any,
    where: str,
    job_id: str,
    start: datetime,
    parent_job_id: str | None,
    problems: list[str],
) -> list[Record]:
    """The events of one ``<testsuite>``."""
    name = suite.get("name") or "testsuite"
    records = [
        Record(job_id, JobSubmitted(name=name, kind="ci", parent_job_id=parent_job_id), start, "submitted"),
        Record(
            job_id,
            JobStarted(host=suite.get("hostname") or "", os="", kernel="", cwd=""),
            start,
            "started",
        ),
    ]
    values = {"junit.suite": name}
    for prop in suite.iterfind("properties/property"):
        if prop.get("name"):
            values[prop.get("name")] = prop.get("value") or (prop.text or "")
    records.append(Record(job_id, ProvenanceDeclared(values=values), start, "provenance"))
    cursor = start
    counts: Counter[str] = Counter()
    attempts: Counter[str] = Counter()
    total = 0.0
    for i, case in enumerate(suite.iterfind("testcase"), 1):
        case_where = f"{where} testcase[{i}]"
        step, outcome, exc_type, message = _case(case, case_where, problems)
        status = _STATUS[outcome]
        seconds = _seconds(case, case_where, problems)
        attempts[step] += 1
        n = attempts[step]
        end = cursor + timedelta(seconds=seconds)
        records.append(Record(job_id, StepStarted(name=step, step_attempt=n), cursor, f"case {i} started"))
        finished = StepFinished(
            name=step, step_attempt=n, status=status, exception_type=exc_type, exception_message=message
        )
        records.append(Record(job_id, finished, end, f"case {i} finished"))
        counts[outcome] += 1
        total += seconds
        cursor = end
    suite_seconds = max(_seconds(suite, where, problems), total)
    end = start + timedelta(seconds=suite_seconds)
    for metric, value, unit in (
        ("junit.tests", sum(counts.values()), None),
        ("junit.failures", counts["failure"], None),
        ("junit.errors", counts["error"], None),
        ("junit.skipped", counts["skipped"], None),
        ("junit.time", suite_seconds, "s"),
    ):
        records.append(Record(job_id, MetricMeasured(name=metric, value=float(value), unit=unit), end, metric))
    status = "failed" if counts["failure"] or counts["error"] else "succeeded"
    finished_job = JobFinished(status=status, duration_ms=round(suite_seconds * 1000))
    records.append(Record(job_id, finished_job, end, "finished"))
    return records


def read_junit(
    data: bytes,
    source: str,
    *,
    job_id: str | None = None,
    parent_job_id: str | None = None,
    start: datetime | None = None,
    written: datetime | None = None,
) -> list[Record]:
    """Records of every suite in a JUnit XML document (``<testsuites>`` or a single ``<testsuite>``).

    ``job_id`` names the job of a single suite, or prefixes ``<job_id>-<suite name>`` when there are several;
    suites that carry no timestamp start at ``start``, or else ``written`` (when the file was written) less
    their ``time``.
    """
    root = _parse(data, source)
    if root.tag == "testsuite":
        suites = [root]
    elif root.tag == "testsuites":
        suites = list(root.iter("testsuite"))
    else:
        raise BadInputError(source, [f"root element <{root.tag}>: expected <testsuites> or <testsuite>"])
    if not suites:
        raise BadInputError(source, ["no <testsuite> element"])
    problems: list[str] = []
    records: list[Record] = []
    ids: set[str] = set()
    for i, suite in enumerate(suites, 1):
        name = suite.get("name") or f"suite{i}"
        where = f"testsuite[{i}] {name!r}"
        begin = _timestamp(suite.get("timestamp"), where, problems) or start
        if begin is None and written is not None:
            begin = written - timedelta(seconds=_seconds(suite, where, []))
        if begin is None:
            problems.append(f"{where}: no timestamp; pass a start time")
            continue
        if job_id is None:
            this_id = default_job_id(name, begin if suite.get("timestamp") else None, data)
        else:
            this_id = job_id if len(suites) == 1 else f"{job_id}-{_UNSAFE.sub('_', name)}"
        if this_id in ids:
            this_id = f"{this_id}-{i}"
        ids.add(this_id)
        records += suite_records(suite, where, this_id, begin, parent_job_id, problems)
    if problems:
        raise BadInputError(source, problems)
    return records
