"""Connecting to ClickHouse by URL: ``chdb:///path/to/dir`` (embedded engine) or ``http(s)://host:8123``.

clickhouse-connect is imported lazily: the emitter's install does not carry it
(``pip install 'jobprov[clickhouse]'``). One process owns an embedded store; a second one gets a clear
message naming the store, not the engine's lock error.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jobprov.errors import ConfigError, JobprovError, SinkError
from jobprov.settings import Secret

ENGINE_ALLOCATOR_ENV = "JE_MALLOC_CONF"
"""The environment variable the embedded engine's allocator (its own jemalloc) reads its options from, once, when
the engine is loaded."""
ENGINE_ALLOCATOR_OPTIONS = "dirty_decay_ms:0"
"""What the embedded engine's allocator is given, for a service, unless the environment sets it: return freed pages
to the system at once. The engine's build keeps them for 5 s (``dirty_decay_ms:5000``), and each flush's inserts
and the merges they start free tens of MB, so a worker's RSS followed its recent inserts rather than what it
holds. Measured (benchmarks/state.py, RSS after 1M events against after 10k): +110 MB with the build's setting, of
which the allocator's resident memory +111 MB (58 -> 169 MB) while what the engine had allocated grew 8 MB; +36 MB
with this one (resident 43 -> 52 MB); 250 ms and 1 s gave +63 MB. It costs the engine page faults: replay
(benchmarks/replay.py) ran 6-7% slower with it, hence :data:`BATCH_ENGINE_ALLOCATOR_OPTIONS`. A server's
allocator is the server's business (decision 0009)."""
BATCH_ENGINE_ALLOCATOR_OPTIONS = ""
"""For a one-off batch that exits when done (`jobprov replay`): the engine build's own setting, the faster one."""


def configure_engine_allocator(options: str = ENGINE_ALLOCATOR_OPTIONS) -> None:
    """Give the embedded engine's allocator ``options`` before the engine is loaded (it reads them once, so the
    first call in a process decides; :func:`connect` makes it with the default); the environment's own setting
    wins."""
    if "chdb" in sys.modules:  # loaded already: its allocator is configured
        return
    os.environ.setdefault(ENGINE_ALLOCATOR_ENV, options)


class StoreBusyError(JobprovError):
    """The embedded store is open in another process."""


# Stores this process has opened: its own lock on them is not "another process".
_OPENED_HERE: set[str] = set()


def connect(url: str, *, username: str | None = None, password: Secret | None = None) -> Any:
    try:
        import clickhouse_connect
    except ImportError as exc:
        raise JobprovError("ClickHouse support needs: pip install 'jobprov[clickhouse]'") from exc
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        path = unquote(parts.path)
        if not path or not path.startswith("/"):
            raise ConfigError("clickhouse_url", f"{url!r}: expected chdb:///absolute/dir")
        Path(path).mkdir(parents=True, exist_ok=True)
        if path not in _OPENED_HERE and _store_in_use(Path(path)):
            raise StoreBusyError(
                f"the store {path} is open in another jobprov process; ask that process (its query API) "
                "or stop it first"
            )
        configure_engine_allocator()
        try:
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            client.command("SELECT 1")  # the engine takes the store's lock on first use: fail here, clearly
            _OPENED_HERE.add(path)
            return client
        except Exception as exc:
            if "lock" in str(exc).lower() or "status" in str(exc).lower():
                raise StoreBusyError(
                    f"the store {path} is open in another jobprov process; ask that process (its query API) "
                    "or stop it first"
                ) from exc
            raise SinkError(f"cannot open the embedded store {path}: {exc}") from exc
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError("clickhouse_url", f"{url!r}: no host")
        try:
            return clickhouse_connect.get_client(
                host=parts.hostname,
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                secure=parts.scheme == "https",
                username=username or unquote(parts.username or "") or "default",
                password=password.get() if password else unquote(parts.password or ""),
            )
        except Exception as exc:
            raise SinkError(f"cannot reach ClickHouse at {parts.hostname}:{parts.port}: {exc}") from exc
    raise ConfigError("clickhouse_url", f"{url!r}: expected chdb:///dir or http(s)://host:port")


def _store_in_use(path: Path) -> bool:
    """The engine holds an exclusive flock on ``<store>/status`` while it runs; probe it without keeping it."""
    status = path / "status"
    if not status.exists():
        return False
    with status.open("rb") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Errors worth waiting out (connection refused, timeouts, too many parts): backpressure, not failure."""
    from clickhouse_connect.driver.exceptions import OperationalError

    text = str(exc).lower()
    return isinstance(exc, OperationalError | ConnectionError | TimeoutError) or any(
        marker in text for marker in ("too many parts", "timeout", "connection refused", "memory limit")
    )


def second_connection(client: Any) -> Any | None:
    """Another connection to the embedded store ``client`` has open, for work beside it (the engine lets go of
    the interpreter lock while it runs a query, so the two overlap); None for a server's client."""
    path = getattr(client, "path", None)
    if type(client).__name__ != "ChdbClient" or not isinstance(path, str) or not path.startswith("/"):
        return None
    return connect(f"chdb://{path}")
