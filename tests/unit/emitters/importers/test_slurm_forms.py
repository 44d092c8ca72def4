"""sacct --parsable2 and jobcomp/kafka records go through the JSON form's mapping: the same jobs, attempts, times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobprov.emitters.importers.send import BadInputError, Record, check
from jobprov.emitters.importers.slurm import read_sacct_json
from jobprov.emitters.importers.slurm_forms import (
    JobcompReader,
    _bytes,
    _duration,
    _tres,
    read_sacct_parsable,
)
from jobprov.schemas.models import JobFinished, JobStarted, ProvenanceDeclared, ResourceSample

SAMPLES = Path(__file__).parents[3] / "samples"


def _keyed(records: list[Record]) -> dict[tuple[str, str], Record]:
    return {(r.job_id, r.key): r for r in records}


def test_the_parsable_form_gives_the_json_forms_records() -> None:
    from_json = _keyed(read_sacct_json((SAMPLES / "sacct.json").read_bytes(), "json"))
    parsable = read_sacct_parsable((SAMPLES / "sacct-parsable.txt").read_bytes(), "text")
    assert check(parsable) == []
    from_text = _keyed(parsable)
    assert set(from_text) == set(from_json)
    for key, record in from_json.items():
        other = from_text[key]
        assert (other.time, other.attempt, type(other.payload)) == (record.time, record.attempt, type(record.payload))
        if isinstance(record.payload, ResourceSample):  # MaxRSS is printed in KiB, rounded down
            assert 0 <= record.payload.peak_rss_bytes - other.payload.peak_rss_bytes < 1024
        elif isinstance(record.payload, ProvenanceDeclared) and key == (
            "slurm-perlmutter-1020",
            "attempt 1 provenance",
        ):
            # JSON lists the flags (PENDING REQUEUED), the text form the state it shows (REQUEUED)
            assert other.payload.values["slurm.state"] == "REQUEUED"
        else:
            assert other.payload == record.payload, key


def test_parsable_times_in_a_zone_and_the_cancelled_and_requeued_jobs() -> None:
    sample = (SAMPLES / "sacct-parsable.txt").read_bytes()
    records = _keyed(read_sacct_parsable(sample, "text", ZoneInfo("Europe/Paris")))
    started = records[("slurm-perlmutter-1001", "attempt 1 started")]
    assert started.time == datetime(2026, 4, 30, 23, 47, 40, tzinfo=UTC)  # 01:47:40 in Paris (UTC+2)
    assert ("slurm-perlmutter-1030", "attempt 1 started") not in records  # cancelled while pending
    assert records[("slurm-perlmutter-1030", "attempt 1 finished")].payload.status == "aborted"
    assert records[("slurm-perlmutter-1020", "attempt 1 finished")].payload.status == "preempted"
    assert records[("slurm-perlmutter-1020", "attempt 2 finished")].payload.status == "succeeded"


def test_bad_parsable_lines_are_named_and_nothing_is_read() -> None:
    lines = (SAMPLES / "sacct-parsable.txt").read_text().splitlines()
    lines[1] = lines[1].replace("2026-05-01T01:46:40", "yesterday", 1)
    lines[4] = lines[4] + "|extra"
    lines.insert(2, "9999.batch|9999.batch|batch||c||a||COMPLETED||0:0|" + "|" * 12)
    with pytest.raises(BadInputError) as caught:
        read_sacct_parsable("\n".join(lines).encode(), "sacct.txt")
    problems = caught.value.problems
    assert "line 2: Submit: 'yesterday' is not a time" in problems
    assert "line 3: step '9999.batch' before its job's line" in problems
    assert "line 6: 25 fields, the header has 24" in problems
    assert "line 2 (job 1001): no time/submission" in problems  # what follows from the bad Submit
    assert len(problems) == 4
    with pytest.raises(BadInputError, match="line 1: the header lacks State, Submit"):
        read_sacct_parsable(b"JobID|JobName\n1|x\n", "s")
    with pytest.raises(BadInputError, match="no header with JobID"):
        read_sacct_parsable(b"1|x|COMPLETED\n", "s")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:10:00", 600), ("1-02:03:04", 93784), ("03:04", 184), ("00:18.500", 18), ("Unknown", 0)],
)
def test_durations(text: str, seconds: int) -> None:
    assert _duration(text) == seconds


@pytest.mark.parametrize("bad", ["10", "1:2:3:4", "ten"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        _duration(bad)


def test_sizes_and_tres() -> None:
    assert [_bytes(v) for v in ("1024K", "2.5M", "1G", "0", "512")] == [1048576, 2621440, 1073741824, 0, 512]
    assert _tres("billing=4,cpu=4,mem=16000M,node=1") == [
        {"type": "billing", "count": 4},
        {"type": "cpu", "count": 4},
        {"type": "mem", "count": 16000},
        {"type": "node", "count": 1},
    ]
    with pytest.raises(ValueError, match="type=count"):
        _tres("cpu")


def _jobcomp() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLES / "slurm-jobcomp.jsonl").read_text().splitlines()]


def test_jobcomp_records_give_the_json_forms_jobs_and_attempts() -> None:
    read = JobcompReader()
    records: list[Record] = []
    for i, body in enumerate(_jobcomp()):
        records += read(body, f"offset {i}")
    assert check(records) == []
    finished = {(r.job_id, r.attempt): r.payload for r in records if isinstance(r.payload, JobFinished)}
    assert {k: (p.status, p.exit_code, p.signal, p.duration_ms) for k, p in finished.items()} == {
        ("slurm-perlmutter-1001", 1): ("succeeded", 0, None, 600_000),
        ("slurm-perlmutter-1010_0", 1): ("succeeded", 0, None, 300_000),
        ("slurm-perlmutter-1010_1", 1): ("failed", 0, 9, 150_000),
        ("slurm-perlmutter-1020", 1): ("preempted", 0, 15, 300_000),
        ("slurm-perlmutter-1020", 2): ("succeeded", 0, None, 600_000),
        ("slurm-perlmutter-1030", 1): ("aborted", 0, None, 0),
    }
    # the same record keys (so the same event ids) as sacct --json gives for the same job
    from_json = _keyed(read_sacct_json((SAMPLES / "sacct.json").read_bytes(), "json"))
    assert {(r.job_id, r.key) for r in records if not r.key.endswith("resources")} <= set(from_json)
    started = [r for r in records if isinstance(r.payload, JobStarted) and r.job_id == "slurm-perlmutter-1010_1"]
    assert started[0].payload.host == "node04"
    assert started[0].payload.cwd == "/home/alice/reduce"


def test_jobcomp_redelivery_keeps_attempt_numbers_and_bad_records_are_named() -> None:
    read = JobcompReader()
    first, second = _jobcomp()[3:5]
    assert {r.attempt for r in read(first, "o1")} == {1}
    assert {r.attempt for r in read(second, "o2")} == {2}
    assert {r.attempt for r in read(first, "o1 again")} == {1}
    with pytest.raises(BadInputError, match="jobid: missing"):
        read({"job": 1}, "o3")
    bad = dict(first, **{"@end": "soon", "exit_code": "x"})
    del bad["@submit"]
    with pytest.raises(BadInputError) as caught:
        read(bad, "o4")
    assert set(caught.value.problems) == {
        "@end: 'soon' is not a time",
        "exit_code: 'x' is not code:signal",
        "@submit: missing",
    }


def test_a_jobcomp_start_record_leaves_the_provenance_to_the_end_record() -> None:
    read = JobcompReader()
    end = _jobcomp()[0]
    start = dict(end, state="RUNNING", exit_code="0:0")
    started = read(start, "o1")
    assert not [r for r in started if isinstance(r.payload, (ProvenanceDeclared, JobFinished))]
    assert [r.key for r in started if isinstance(r.payload, JobStarted)] == ["attempt 1 started"]
    ended = read(end, "o2")
    provenance = [r.payload.values for r in ended if isinstance(r.payload, ProvenanceDeclared)]
    assert provenance[0]["slurm.state"] == "COMPLETED"
    assert {r.attempt for r in ended} == {1}, "the same attempt: the same start time"


def test_jobcomp_reader_remembers_a_bounded_number_of_jobs() -> None:
    read = JobcompReader(remember=2)
    records = _jobcomp()
    first, requeued = records[3], records[4]  # job 1020's two attempts
    read(first, "o1")
    read(records[0], "o2")
    read(records[1], "o3")  # a third job: 1020 is forgotten
    assert {r.attempt for r in read(requeued, "o4")} == {1}, "documented: numbered afresh once forgotten"
