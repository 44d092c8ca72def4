"""A job's fold state as bytes, so a worker brings a job back from the store without folding its events again.

A snapshot is a cache, never the truth (the events are): it is tied to the fold version and the comparability
registry it was made with, and one that cannot be used (another version or registry, a damaged row) is ignored,
the job's stored events being folded again instead. The bytes are pickle, read by an unpickler that builds only the
fold's state classes and the event model's records: a row of the store must never be able to run code.

The memo caches of :class:`JobFoldState` are left out (they are derived from the rest, and rebuilt on use).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import pickle
from typing import Any

from jobprov.errors import JobprovError
from jobprov.schemas import models
from jobprov.stream_processors import state as state_module
from jobprov.stream_processors.state import JobFoldState


class SnapshotError(JobprovError):
    """The bytes are not a snapshot this code can read."""


_BUILTINS: dict[str, type[Any]] = {"set": set, "frozenset": frozenset}
# An alert's raise carries a time (aware, UTC): plain values, nothing that runs code.
_DATETIME: dict[str, type[Any]] = {
    "datetime": datetime.datetime,
    "timezone": datetime.timezone,
    "timedelta": datetime.timedelta,
}


def _allowed(module: str, name: str) -> type[Any] | None:
    if module == "builtins":
        return _BUILTINS.get(name)
    if module == "datetime":
        return _DATETIME.get(name)
    owner = {"jobprov.stream_processors.state": state_module, "jobprov.schemas.models": models}.get(module)
    found = getattr(owner, name, None) if owner is not None else None
    if isinstance(found, type) and (dataclasses.is_dataclass(found) or found is state_module.SeqSet):
        return found
    return None


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        cls = _allowed(module, name)
        if cls is None:
            raise SnapshotError(f"a snapshot may not build {module}.{name}")
        return cls


def dump(job: JobFoldState) -> bytes:
    values, buckets = job._values, job._buckets
    job._values, job._buckets = {}, {}
    try:
        return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        job._values, job._buckets = values, buckets


def load(data: bytes) -> JobFoldState:
    try:
        job = _Unpickler(io.BytesIO(data)).load()
    except SnapshotError:
        raise
    except Exception as exc:  # damaged or foreign bytes: whatever pickle raises
        raise SnapshotError(f"unreadable snapshot: {type(exc).__name__}: {exc}") from exc
    if not isinstance(job, JobFoldState):
        raise SnapshotError(f"a snapshot holds a {type(job).__name__}, not a job's state")
    return job
