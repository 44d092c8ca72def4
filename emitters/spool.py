"""The durable local spool: Avro object container files (OCF) of events, fsync'd before a send returns.

Layout of a spool directory::

    20261121T200455123456-4242-1a2b3c4d.avro.open   a segment being written (its writer holds an flock)
    20261121T200455123456-4242-1a2b3c4d.avro        a sealed segment, ready to drain

Any Avro tool reads a segment (``fastavro.reader``, ``avro cat``): the writer schema is in its header. A
writer that dies leaves an ``.open`` segment whose lock is free; readers treat it as sealed and read every
complete block (a torn last block, from a crash mid-write, is reported and skipped).
"""

from __future__ import annotations

import fcntl
import io
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

from jobprov.emitters.base import DeliveryReport, Framed
from jobprov.errors import TransportError
from jobprov.schemas import registry
from jobprov.schemas.wire import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER

SEALED = ".avro"
OPEN = ".avro.open"
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024


def _body(value: bytes, fingerprint: bytes) -> bytes:
    """The Avro body of a framed event; only events written with the segment's schema belong in it."""
    if value[:2] == SINGLE_OBJECT_MARKER:
        if value[2:10] != fingerprint:
            raise ValueError("event written with another schema version")
        return value[10:]
    if value[:1] == CONFLUENT_MAGIC:
        # Our emitters register and write the current schema only, so the body is in the current schema.
        return value[5:]
    raise ValueError("unknown framing")


class SpoolTransport:
    """Writes framed events to fsync'd OCF segments. Thread-safe: Kafka delivery callbacks spool too."""

    name = "spool"

    def __init__(self, directory: str | Path, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(f"cannot create spool directory {self.directory}: {exc.strerror}") from exc
        self._segment_bytes = segment_bytes
        self._schema = registry.current()
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._writer: Any = None
        self._path: Path | None = None
        self._report = DeliveryReport(spool_dir=str(self.directory))

    def _open_segment(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}{OPEN}"
        fh = path.open("xb")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        from fastavro.write import Writer  # here: a job whose events all reach the broker never loads it

        self._writer = Writer(fh, self._schema.parsed, codec="null")
        fh.flush()
        self._fh, self._path = fh, path

    def _seal(self) -> None:
        if self._fh is None or self._path is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        sealed = self._path.with_name(self._path.name[: -len(OPEN)] + SEALED)
        os.rename(self._path, sealed)
        _fsync_dir(self.directory)
        self._fh.close()  # releases the flock
        self._fh = self._writer = self._path = None

    def send(self, batch: list[Framed]) -> None:
        if not batch:
            return
        bodies: list[bytes] = []
        for item in batch:
            try:
                bodies.append(_body(item.value, self._schema.fingerprint))
            except ValueError as exc:
                self._report.lost += 1
                self._report.errors.append(f"event {item.event_id} not spooled: {exc}")
        try:
            with self._lock:
                if self._fh is None:
                    self._open_segment()
                assert self._fh is not None
                self._writer.write_block(SimpleNamespace(num_records=len(bodies), bytes_=io.BytesIO(b"".join(bodies))))
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._report.spooled += len(bodies)
                if self._fh.tell() >= self._segment_bytes:
                    self._seal()
        except OSError as exc:
            self._report.lost += len(bodies)
            self._report.errors.append(f"spool write to {self.directory} failed: {exc}")

    def poll(self) -> None:
        return None

    def close(self, timeout: float) -> DeliveryReport:
        with self._lock:
            try:
                self._seal()
            except OSError as exc:
                self._report.errors.append(f"cannot seal spool segment: {exc}")
        return self._report


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Segment:
    path: Path
    handle: IO[bytes]  # holds the exclusive flock while we work on the segment

    def release(self) -> None:
        self.handle.close()


def claim_segments(directory: str | Path) -> Iterator[Segment]:
    """Lock each drainable segment in turn: sealed ones, and open ones whose writer is gone."""
    root = Path(directory)
    if not root.is_dir():
        return
    for path in sorted(p for p in root.iterdir() if p.name.endswith((SEALED, OPEN))):
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            continue  # drained by someone else meanwhile
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()  # a live writer or another drainer holds it
            continue
        if not path.exists():
            handle.close()
            continue
        yield Segment(path, handle)


@dataclass
class SegmentContents:
    records: list[dict[str, Any]]
    torn_tail: str | None  # why reading stopped early, if it did


def read_segment(handle: IO[bytes]) -> SegmentContents:
    """Every complete record of a segment, resolved to the current schema."""
    import fastavro

    handle.seek(0)
    records: list[dict[str, Any]] = []
    try:
        for record in fastavro.reader(handle, reader_schema=registry.current().parsed, return_record_name=True):
            if isinstance(record, dict):
                records.append(record)
    except Exception as exc:  # a torn block from a crash mid-write; everything before it is good
        return SegmentContents(records, f"{type(exc).__name__}: {exc}")
    return SegmentContents(records, None)


def spool_status(directory: str | Path) -> dict[str, int]:
    root = Path(directory)
    sealed = open_ = size = 0
    if root.is_dir():
        for path in root.iterdir():
            if path.name.endswith(SEALED):
                sealed += 1
            elif path.name.endswith(OPEN):
                open_ += 1
            else:
                continue
            size += path.stat().st_size
    return {"sealed_segments": sealed, "open_segments": open_, "bytes": size}


def write_records(directory: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write already-decoded records as one sealed segment (used to keep what a drain could not send)."""
    import fastavro

    root = Path(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    tmp = root / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}{OPEN}"
    with tmp.open("xb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fastavro.writer(fh, registry.current().parsed, records)
        fh.flush()
        os.fsync(fh.fileno())
        final = tmp.with_name(tmp.name[: -len(OPEN)] + SEALED)
        os.rename(tmp, final)
    _fsync_dir(root)
    return final


__all__ = [
    "SpoolTransport",
    "claim_segments",
    "read_segment",
    "spool_status",
    "write_records",
]
