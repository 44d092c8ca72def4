"""Slurm's other forms of a job record, put in ``sacct --json``'s shape so that one mapping
(:func:`~jobprov.emitters.importers.slurm.attempt_records`) turns every form into the same events.

- ``sacct --parsable2`` (``|``-separated, a header line naming the ``--format`` columns): :data:`COLUMNS` says which
  column feeds which field of the JSON shape. A job's row is followed by its steps' rows (``1234.batch``,
  ``1234.extern``, ``1234.0``); an array task is ``1234_5``; with ``--duplicates`` a requeued job has a row per
  attempt, the earlier ones in state ``REQUEUED``. Columns not in the table are ignored. Times are read as UTC
  unless they carry an offset (run ``TZ=UTC sacct ...``), or in the zone given.
- ``jobcomp/kafka`` (the JSON object the plugin publishes per job, the fields of ``jobcomp/elasticsearch``):
  :data:`JOBCOMP_FIELDS` says the same for its fields. It has no steps, CPU times or MaxRSS, and no restart count:
  :class:`JobcompReader` numbers a job's attempts in the order their start times arrive.

Both forms, like the JSON one, come out under the importer ``slurm``: a job read from sacct and from jobcomp is
recorded once (its events have the same ids).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from jobprov.emitters.importers.send import BadInputError, Record
from jobprov.emitters.importers.slurm import attempt_records, read_jobs
from jobprov.schemas.models import ProvenanceDeclared

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_JOB_ID = re.compile(r"^(\d+)(?:_(\d+|\[[^\]]*\]))?(?:\+(\d+))?(?:\.(.+))?$")
_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_NEVER = {"", "Unknown", "None", "N/A"}
_NOT_ENDED = {"RUNNING", "PENDING", "CONFIGURING", "RESIZING", "SUSPENDED"}


def _epoch(value: str, zone: tzinfo = UTC) -> int:
    """An ISO time (``2026-05-01T10:00:00``, zone ``zone`` unless it has an offset) as epoch seconds; 0: never."""
    if value in _NEVER:
        return 0
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time") from None
    return int((when if when.tzinfo else when.replace(tzinfo=zone)).timestamp())


def _duration(value: str) -> int:
    """``[DD-[HH:]]MM:SS[.frac]`` as whole seconds."""
    if value in _NEVER:
        return 0
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration ([DD-[HH:]]MM:SS)")
    days, hours, minutes, seconds = match.groups()
    return ((int(days or 0) * 24 + int(hours or 0)) * 60 + int(minutes)) * 60 + int(float(seconds))


def _bytes(value: str) -> int:
    """``2.50M`` -> bytes (sacct's binary units; no unit: bytes)."""
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", value)
    if not match:
        raise ValueError(f"{value!r} is not a size")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _tres(value: str) -> list[dict[str, Any]]:
    """``cpu=4,mem=16G,node=1`` -> sacct --json's TRES list (memory in MB, as the JSON form counts it)."""
    out: list[dict[str, Any]] = []
    for item in filter(None, value.split(",")):
        kind, sep, count = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not type=count")
        number = _bytes(count) // 1024**2 if kind == "mem" else int(_bytes(count))
        out.append({"type": kind, "count": number})
    return out


def _exit_code(value: str) -> dict[str, Any]:
    """``return code:signal`` (``0:15``) as sacct --json's exit_code."""
    code, sep, signal = value.partition(":")
    if not (code.isdigit() and sep and signal.isdigit()):
        raise ValueError(f"{value!r} is not code:signal")
    return {"return_code": int(code), "signal": {"id": int(signal)}}


def _states(value: str) -> list[str]:
    """``CANCELLED by 1234`` -> ``["CANCELLED"]``."""
    return [value.split()[0]] if value.strip() else []


def _maxrss(value: str) -> list[dict[str, Any]]:
    return [{"type": "mem", "count": _bytes(value)}] if value not in _NEVER else []


Convert = Callable[[str], Any]

# sacct --parsable2 column -> (field of sacct --json's shape, conversion). Times take the reader's zone.
COLUMNS: dict[str, tuple[str, Convert]] = {
    "JobName": ("name", str),
    "User": ("user", str),
    "Cluster": ("cluster", str),
    "Partition": ("partition", str),
    "Account": ("account", str),
    "QOS": ("qos", str),
    "State": ("state/current", _states),
    "Reason": ("state/reason", str),
    "ExitCode": ("exit_code", _exit_code),
    "Submit": ("time/submission", _epoch),
    "Start": ("time/start", _epoch),
    "End": ("time/end", _epoch),
    "Elapsed": ("time/elapsed", _duration),
    "ElapsedRaw": ("time/elapsed", int),
    "UserCPU": ("time/user/seconds", _duration),
    "SystemCPU": ("time/system/seconds", _duration),
    "NodeList": ("nodes", str),
    "AllocNodes": ("allocation_nodes", int),
    "ReqCPUS": ("required/CPUs", int),
    "AllocTRES": ("tres/allocated", _tres),
    "WorkDir": ("working_directory", str),
    "SubmitLine": ("submit_line", str),
    "Restarts": ("restart_cnt", int),
    "MaxRSS": ("tres/requested/max", _maxrss),
}

# jobcomp/kafka (jobcomp/elasticsearch) field -> (field of sacct --json's shape, conversion).
JOBCOMP_FIELDS: dict[str, tuple[str, Convert]] = {
    "job_name": ("name", str),
    "username": ("user", str),
    "cluster": ("cluster", str),
    "partition": ("partition", str),
    "account": ("account", str),
    "qos": ("qos", str),
    "state": ("state/current", _states),
    "exit_code": ("exit_code", _exit_code),
    "@submit": ("time/submission", _epoch),
    "@start": ("time/start", _epoch),
    "@end": ("time/end", _epoch),
    "elapsed": ("time/elapsed", int),
    "nodes": ("nodes", str),
    "total_nodes": ("allocation_nodes", int),
    "tres_alloc": ("tres/allocated", _tres),
    "work_dir": ("working_directory", str),
    "array_job_id": ("array/job_id", int),
    "array_task_id": ("array/task_id", int),
}


def _put(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    for part in parents:
        record = record.setdefault(part, {})
    record[last] = value


def _shape(
    values: dict[str, Any], table: dict[str, tuple[str, Convert]], zone: tzinfo
) -> tuple[dict[str, Any], list[str]]:
    """``values`` put in sacct --json's shape through ``table``; the fields that would not convert, named."""
    record: dict[str, Any] = {}
    problems = []
    for name, raw in values.items():
        if name not in table or raw is None:
            continue
        path, convert = table[name]
        text = str(raw)
        try:
            value = _epoch(text, zone) if convert is _epoch else convert(text)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        _put(record, path, value)
    return record, problems


def _step(values: dict[str, Any], job_id: str, step: str, zone: tzinfo) -> tuple[dict[str, Any], list[str]]:
    shaped, problems = _shape(values, COLUMNS, zone)
    entry = {
        "step": {"name": shaped.get("name") or step, "id": f"{job_id}.{step}"},
        "time": {k: v for k, v in shaped.get("time", {}).items() if k in ("start", "end")},
        "state": shaped.get("state", {}).get("current", []),
        "tres": {"requested": {"max": shaped.get("tres", {}).get("requested", {}).get("max", [])}},
    }
    return entry, problems


def read_sacct_parsable(data: bytes, source: str, zone: tzinfo = UTC) -> list[Record]:
    """The records of ``sacct --parsable2`` output with its header line (see the module docstring)."""
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError as exc:
        raise BadInputError(source, [f"encoding: not UTF-8 ({exc})"]) from exc
    if not lines or "JobID" not in lines[0].split("|"):
        raise BadInputError(source, ["line 1: not sacct --parsable2 output: no header with JobID"])
    header = lines[0].rstrip("|").split("|")
    missing = [c for c in ("JobID", "State", "Submit") if c not in header]
    if missing:
        raise BadInputError(source, [f"line 1: the header lacks {', '.join(missing)}"])
    jobs: list[dict[str, Any]] = []
    places: list[str] = []
    problems: list[str] = []
    last: dict[str, dict[str, Any]] = {}  # job id as written -> its latest row (steps follow their job's row)
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("|")
        if fields and fields[-1] == "" and len(fields) == len(header) + 1:
            fields.pop()  # --parsable (not 2) ends every line with a '|'
        if len(fields) != len(header):
            problems.append(f"line {number}: {len(fields)} fields, the header has {len(header)}")
            continue
        values = dict(zip(header, fields, strict=True))
        match = _JOB_ID.match(values["JobID"])
        if not match:
            problems.append(f"line {number}: JobID: {values['JobID']!r} is not a Slurm job id")
            continue
        main, task, _het, step = match.groups()
        written = values["JobID"].split(".")[0]
        if step is not None:
            if written not in last:
                problems.append(f"line {number}: step {values['JobID']!r} before its job's line")
                continue
            # Steps are named by the job's own number, as in sacct --json (an array task's 1011.batch).
            entry, bad = _step(values, str(last[written]["job_id"]), step, zone)
            problems += [f"line {number}: {p}" for p in bad]
            last[written].setdefault("steps", []).append(entry)
            continue
        record, bad = _shape(values, COLUMNS, zone)
        problems += [f"line {number}: {p}" for p in bad]
        raw = values.get("JobIDRaw", "")
        record["job_id"] = int(raw) if raw.isdigit() else int(main)
        if task is not None and task.isdigit():
            record["array"] = {"job_id": int(main), "task_id": int(task)}
        last[written] = record
        jobs.append(record)
        places.append(f"line {number}")
    return read_jobs(jobs, source, places, problems)


class JobcompReader:
    """Reads jobcomp/kafka records one at a time; remembers the start times of the last ``remember`` jobs to
    number their attempts (a job requeued before this reader started counts from 1 again)."""

    def __init__(self, remember: int = 100_000) -> None:
        self._starts: OrderedDict[tuple[str, int], list[int]] = OrderedDict()
        self._remember = remember

    def __call__(self, body: Any, source: str) -> list[Record]:
        if not isinstance(body, dict) or not isinstance(body.get("jobid"), int):
            raise BadInputError(source, ["jobid: missing (not a jobcomp record)"])
        record, problems = _shape(body, JOBCOMP_FIELDS, UTC)
        if "submission" not in record.get("time", {}):
            problems.append("@submit: missing")
        if problems:
            raise BadInputError(source, problems)
        record["job_id"] = body["jobid"]
        if "total_cpus" in body and not record.get("tres"):
            record["tres"] = {"allocated": [{"type": "cpu", "count": int(body["total_cpus"])}]}
        key = (str(body.get("cluster") or ""), int(body["jobid"]))
        starts = self._starts.setdefault(key, [])
        self._starts.move_to_end(key)
        start = int(record.get("time", {}).get("start") or 0)
        if start not in starts:
            starts.append(start)
        while len(self._starts) > self._remember:
            self._starts.popitem(last=False)
        found: list[str] = []
        records = attempt_records(record, f"{source} (job {body['jobid']})", starts.index(start) + 1, found)
        if found:
            raise BadInputError(source, found)
        if body.get("state") in _NOT_ENDED:
            # A job-start record (Slurm may publish one per job start too): its provenance would share the end
            # record's event id and, arriving first, keep `slurm.state` at RUNNING; the end record brings it.
            records = [r for r in records if not isinstance(r.payload, ProvenanceDeclared)]
        return records
