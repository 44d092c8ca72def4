"""Sending the spool to Kafka: ``jobprov spool drain`` and the emitter's drain on start.

Each segment is locked, read, produced with the idempotent producer, and only what the broker acknowledged is
removed: a fully acknowledged segment is deleted, a partly acknowledged one is replaced by a segment holding
only the rest. A damaged segment gives up every event that can be read (``emitters/ocf.py``); the file itself
is then moved to ``quarantine/`` with a note instead of being deleted, and the drain reports it.

A crash between producing and deleting re-sends those events on the next drain; they keep their event_id, so
consumers see each event once.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from jobprov.emitters.kafka import log, producer_config
from jobprov.emitters.spool import claim_segments, quarantine, read_segment, write_records
from jobprov.schemas.wire import Codec

_SLICE_S = 0.1


@dataclass
class DrainReport:
    segments: int = 0
    sent: int = 0
    kept: int = 0
    quarantined: list[str] = field(default_factory=list)  # "segment: what could not be read"
    errors: list[str] = field(default_factory=list)


def broker_reachable(
    bootstrap: str, security: dict[str, str], timeout: float, stop: threading.Event | None = None
) -> bool:
    """True if a broker answers a metadata request within ``timeout`` seconds. Asks in short slices (the
    client keeps connecting in between) so that ``stop`` ends the wait within a tenth of a second."""
    probe = Producer({**producer_config(bootstrap, 5000, security), "client.id": "jobprov-probe"})
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return False
        try:
            probe.list_topics(timeout=min(_SLICE_S, remaining))
            return True
        except Exception:  # noqa: S112 - not yet: the next slice asks again
            continue


def drain(
    directory: str | Path,
    *,
    bootstrap: str,
    topic: str,
    codec: Codec,
    security: dict[str, str] | None = None,
    timeout: float = 60.0,
    stop: threading.Event | None = None,
) -> DrainReport:
    """Send every drainable segment of ``directory``; bounded by ``timeout`` seconds overall."""
    report = DrainReport()
    deadline = time.monotonic() + timeout
    acked: set[str] = set()
    failures: list[str] = []

    producer = Producer(
        {**producer_config(bootstrap, max(1000, int(timeout * 1000)), security or {}), "client.id": "jobprov-drain"}
    )
    for segment in claim_segments(directory):
        try:
            if stop is not None and stop.is_set():
                break
            if time.monotonic() >= deadline:
                break
            contents = read_segment(segment.handle)
            report.segments += 1
            _send_segment(producer, topic, codec, contents.records, deadline, acked, failures, stop)
            unacked = [r for r in contents.records if r["event_id"] not in acked]
            sent = len(contents.records) - len(unacked)
            report.sent += sent
            if unacked:
                write_records(segment.path.parent, unacked)
                report.kept += len(unacked)
            if contents.damage:
                damage = "; ".join(str(d) for d in contents.damage)
                where = quarantine(
                    segment.path,
                    f"{segment.path.name}: {len(contents.records)} readable events recovered from this segment "
                    f"({sent} sent to {topic}, {len(unacked)} kept in the spool to send later); this file still "
                    f"holds them and the parts that could not be read: {damage}",
                )
                report.quarantined.append(f"{where}: {damage}")
            else:
                segment.path.unlink()
        except OSError as exc:
            report.errors.append(f"{segment.path.name}: {exc}")
        finally:
            segment.release()
    report.errors.extend(sorted(set(failures)))
    return report


def _send_segment(
    producer: Producer,
    topic: str,
    codec: Codec,
    records: list[dict[str, Any]],
    deadline: float,
    acked: set[str],
    failures: list[str],
    stop: threading.Event | None,
) -> None:
    def on_delivery(event_id: str, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acked.add(event_id)
        else:
            failures.append(str(err))

    for record in records:
        value = codec.encode(record)
        callback = functools.partial(on_delivery, record["event_id"])
        while True:
            try:
                producer.produce(topic, value, record["job_id"], on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.1)
                if time.monotonic() >= deadline:
                    return
    remaining = len(producer)
    while remaining and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        remaining = producer.flush(min(_SLICE_S, max(0.0, deadline - time.monotonic())))
    if remaining:
        log.debug("drain: %d events unacknowledged at the deadline", remaining)
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.flush(0)
