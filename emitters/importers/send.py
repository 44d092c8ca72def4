"""Sending imported records as the emitter's own events, so that importing the same source twice changes nothing.

An importer turns a file (JUnit XML, pytest-benchmark JSON, ``sacct --json``...) into :class:`Record` values:
a job id, a payload of ``jobprov.schemas.models``, the time the source says it happened, and a key naming the
source record. :func:`send` gives every event an id derived from ``(importer, job id, key)`` (uuid5) and
``seq = 0``, which the fold deduplicates by event id: a second import of the same file, or of a file that
repeats some records (a Slurm job seen running, then finished), adds only the records that are new.

Guarantees:

- All or nothing per call: every record is checked (the emitter's own rules, ``emitters/validate.py``, and
  unique keys) before anything is sent; :class:`BadInputError` lists every problem and nothing is sent.
- Events go through the configured transport (Kafka with the spool as fallback, or the spool), like the
  emitter's, after the same redaction of secret values from the environment.
- ``send`` returns the transport's :class:`~jobprov.emitters.base.DeliveryReport`; what the broker did not take
  is in the spool, never silently lost.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobprov import __version__
from jobprov.emitters.base import DeliveryReport, Framed
from jobprov.emitters.emitter import event_time_ms
from jobprov.emitters.redact import Redactor
from jobprov.emitters.validate import check_event
from jobprov.errors import InvalidEventError, JobprovError
from jobprov.schemas.models import Event, Producer
from jobprov.settings import EmitterSettings

# Fixed forever: event ids of imported records derive from it, and changing it would duplicate every import.
IMPORT_NAMESPACE = uuid.UUID("5b8f3c1e-2a47-4d2e-9a0b-6c1f0e7d9a31")
_BATCH = 2048


class BadInputError(JobprovError, ValueError):
    """A source file has records that cannot be imported; ``problems`` names each (line or element)."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{source}: nothing imported; bad input:\n  {shown}{more}")
        self.problems = list(problems)


def load_json(data: bytes, source: str) -> Any:
    """A JSON document, or BadInputError naming where it stops being JSON (line and column, or the encoding)."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "encoding"
        raise BadInputError(source, [f"{where}: not JSON ({exc})"]) from exc


@dataclass(frozen=True, slots=True)
class Record:
    """One event to import. ``key`` names the source record within its job (unique per job and importer)."""

    job_id: str
    payload: Any
    time: datetime
    key: str
    attempt: int = 1


def event_id(importer: str, job_id: str, key: str) -> str:
    """The event id of a record: the same source record always gets the same id."""
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{importer}\x1f{job_id}\x1f{key}"))


def producer(importer: str) -> Producer:
    """The producer of an importer's events; its instance id is stable, as its events' ids are."""
    return Producer(
        name=f"jobprov-import-{importer}",
        version=__version__,
        instance_id=str(uuid.uuid5(IMPORT_NAMESPACE, importer)),
    )


def check(records: Iterable[Record]) -> list[str]:
    """Problems that would stop an import: the emitter's rules, naive times, keys used twice in a job."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        where = f"{record.job_id} {record.key}"
        if (record.job_id, record.key) in seen:
            problems.append(f"{where}: the same record twice")
        seen.add((record.job_id, record.key))
        if not record.job_id:
            problems.append(f"{record.key}: no job id")
        try:
            check_event(record.payload, event_time_ms(record.time, 0.0))
        except InvalidEventError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def to_events(records: Sequence[Record], importer: str, environ: dict[str, str] | None = None) -> list[Event]:
    """The envelopes :func:`send` would send (redacted), for callers that fold them in-process."""
    redactor = Redactor(dict(os.environ) if environ is None else environ)
    made = producer(importer)
    now = int(time.time() * 1000)
    return [
        Event(
            event_id=event_id(importer, r.job_id, r.key),
            job_id=r.job_id,
            event_type=type(r.payload).__name__,
            event_time=event_time_ms(r.time, 0.0),
            emitted_at=now,
            producer=made,
            seq=0,
            attempt=r.attempt,
            payload=redactor.payload(r.payload),
        )
        for r in records
    ]


def send(records: Sequence[Record], settings: EmitterSettings, importer: str, source: str) -> DeliveryReport:
    """Check every record, then send them all through the configured transport (see the module docstring)."""
    problems = check(records)
    if problems:
        raise BadInputError(source, problems)
    return deliver(records, settings, importer)


def deliver(records: Sequence[Record], settings: EmitterSettings, importer: str) -> DeliveryReport:
    """Send records already checked (:func:`check`) through a transport of their own, closed before returning:
    the report says what the broker took, what went to the spool and what was lost."""
    from jobprov.emitters.factory import make_codec, make_transport
    from jobprov.schemas.wire import encode_event

    codec = make_codec(settings)
    transport = make_transport(settings)
    framed = [Framed(e.job_id, encode_event(e, codec), e.event_id) for e in to_events(records, importer)]
    for start in range(0, len(framed), _BATCH):
        transport.send(framed[start : start + _BATCH])
        transport.poll()
    return transport.close(settings.flush_timeout_s)
