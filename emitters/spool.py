"""The durable local spool: Avro object container files (OCF) of events, fsync'd before a send returns.

Layout of a spool directory::

    20261121T200455123456-4242-1a2b3c4d.avro.open   a segment being written (its writer holds an flock)
    20261121T200455123456-4242-1a2b3c4d.avro        a sealed segment, ready to drain

Any Avro tool reads a segment (``fastavro.reader``, ``avro cat``): the writer schema is in its header. A
writer that dies leaves an ``.open`` segment whose lock is free; readers treat it as sealed and read every
complete block (a torn last block, from a crash mid-write, keeps its complete records). A damaged segment
is read block by block (``emitters/ocf.py``); the drain sends what was readable and moves the segment into
``quarantine/`` with a note.

The spool may hold what redaction missed: directories are created 0700 and segments 0600.
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
from jobprov.emitters.ocf import Damage, recover
from jobprov.errors import TransportError
from jobprov.schemas import registry
from jobprov.schemas.wire import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER

SEALED = ".avro"
OPEN = ".avro.open"
QUARANTINE = "quarantine"
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
            _make_private_dir(self.directory)
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
        fh = _create_private(path)
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


def _make_private_dir(directory: Path) -> None:
    """``mkdir -p`` that creates every missing level 0700 (``Path.mkdir`` gives parents the default mode)."""
    missing: list[Path] = []
    level = directory
    while not level.is_dir():
        missing.append(level)
        if level.parent == level:
            break
        level = level.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir():
                raise


def _create_private(path: Path) -> IO[bytes]:
    """A new file only its owner can read (fails if it exists)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


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
    damage: list[Damage]  # byte ranges that yielded nothing (see emitters/ocf.py)

    @property
    def torn_tail(self) -> str | None:
        """Why some of the segment could not be read, if any of it could not."""
        return "; ".join(str(d) for d in self.damage) or None


def read_segment(handle: IO[bytes]) -> SegmentContents:
    """Every trustworthy record of a segment, resolved to the current schema, and what could not be read."""
    handle.seek(0)
    recovered = recover(handle.read(), registry.current().parsed)
    return SegmentContents(recovered.records, recovered.damage)


def quarantine(segment: Path, why: str) -> Path:
    """Move a damaged segment into ``quarantine/`` beside it, with a ``.txt`` saying what happened to it.
    The drain has already sent what could be read; the file is kept for inspection, never sent again."""
    folder = segment.parent / QUARANTINE
    _make_private_dir(folder)
    target = folder / segment.name
    os.rename(segment, target)
    note = folder / f"{segment.name}.txt"
    fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(why.rstrip() + "\n")
    _fsync_dir(segment.parent)
    return target


def spool_status(directory: str | Path) -> dict[str, int]:
    root = Path(directory)
    sealed = open_ = size = 0
    folder = root / QUARANTINE
    quarantined = sum(1 for p in folder.iterdir() if p.name.endswith((SEALED, OPEN))) if folder.is_dir() else 0
    if root.is_dir():
        for path in root.iterdir():
            if path.name.endswith(SEALED):
                sealed += 1
            elif path.name.endswith(OPEN):
                open_ += 1
            else:
                continue
            size += path.stat().st_size
    return {"sealed_segments": sealed, "open_segments": open_, "bytes": size, "quarantined_segments": quarantined}


def write_records(directory: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write already-decoded records as one sealed segment (used to keep what a drain could not send)."""
    import fastavro

    root = Path(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    tmp = root / f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}{OPEN}"
    with _create_private(tmp) as fh:
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
    "quarantine",
    "read_segment",
    "spool_status",
    "write_records",
]
