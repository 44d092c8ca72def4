"""The sink contract: where the fold's derived records go.

Guarantees every sink keeps (the stream worker relies on them):

- ``write`` only buffers; it never blocks on I/O and never raises for a well-formed record.
- ``flush(timeout)`` makes everything written so far durable, or raises. The worker calls it before it lets
  the consumer commit offsets, so a record is durable exactly when the events that made it are committed.
- ``detach()`` hands over what was written since the last detach as a :class:`SinkBatch`, whose ``flush`` makes
  it durable (or raises, and may be called again) from another thread while ``write`` goes on: the worker folds
  the next events while the store takes the last ones. Batches are flushed one at a time, in detach order.
- Writes are idempotent: every record has a ``key()`` and a ``state_version``; a sink keeps the highest
  version per key, so redelivered and replayed records change nothing.
- ``flush`` raises :class:`SinkBackpressure` (with ``retry_after``) when the store is slow or down; the worker
  pauses and retries, it does not drop or crash. Other failures raise :class:`jobprov.errors.SinkError`.
- ``close`` is not guaranteed to be called (a killed worker); nothing may depend on it but freeing resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobprov.errors import SinkError
from jobprov.stream_processors.records import Record


class SinkBackpressure(SinkError):
    """The store cannot take more now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkBatch(Protocol):
    def flush(self, timeout: float) -> None: ...


class Sink(Protocol):
    name: str

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self, timeout: float) -> None: ...

    def detach(self) -> SinkBatch: ...

    def close(self) -> None: ...
