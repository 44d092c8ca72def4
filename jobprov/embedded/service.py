"""`jobprov up`: the whole pipeline on one machine, in one command.

One process owns everything that must have a single owner: it starts a Tansu broker (a child process) on the
port emitters reach by default, creates the topics, opens the embedded ClickHouse store under the state home,
applies the migrations, serves the query API and the web page from a thread, and runs the worker's consumer loop
in the main thread. The worker and the API share the store, which no other process may open (the engine's rule);
other processes find the API through ``<home>/up.json`` and ask it instead.

Stopping (Ctrl-C, SIGTERM) stops the worker, the API and the broker, and removes ``up.json``. The store
survives a restart, and so does the broker's log (``--broker-log durable``, the default: Tansu on a local S3 store
under ``<home>/broker``, see durable.py): an event the broker acknowledged is folded even if ``jobprov up`` is
killed before it was, at the next start, from the worker's last committed offset (redelivered events change
nothing). Every event the broker could not take is in the emitters' spool. On start the worker loads the jobs it
held from the store's checkpoints, so a job that spans a restart carries on. ``--broker-log memory`` keeps the
log in memory: lighter, and what the broker held but the worker had not folded is lost on a crash.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobprov.errors import JobprovError
from jobprov.settings import AlertSettings, ApiSettings, ProcessorSettings, state_home

log = logging.getLogger(__name__)

INFO_FILE = "up.json"
DEFAULT_KAFKA_PORT = 9092  # what emitters and workers reach with no configuration
DEFAULT_API_PORT = 8000
TOPIC = "jobprov.events"
BROKER_LOGS = ("durable", "memory")


@dataclass(frozen=True)
class ServiceInfo:
    """What a running `jobprov up` tells other processes about itself."""

    pid: int
    api_url: str
    kafka_url: str
    store_url: str
    started_at: float

    @classmethod
    def read(cls, home: Path) -> ServiceInfo | None:
        try:
            raw = json.loads((home / INFO_FILE).read_text())
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, home: Path) -> None:
        """Atomically, readable by this user only (0600)."""
        tmp = home / f".{INFO_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(asdict(self), indent=2))
        os.chmod(tmp, 0o600)  # an older file of this name kept its mode through O_TRUNC
        tmp.replace(home / INFO_FILE)


def running_service(home: Path | None = None) -> ServiceInfo | None:
    """The `jobprov up` serving this state home, if its process is alive (a stale file is ignored)."""
    info = ServiceInfo.read(home or state_home())
    if info is None:
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return info


class ApiThread:
    """uvicorn in a daemon thread (its signal handlers stay off: the worker's own handle Ctrl-C)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="jobprov-api", daemon=True)

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise JobprovError("the query API did not start (is its port free?)")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def launch(
    args: list[str],
    *,
    env: Mapping[str, str],
    home: Path,
    log_path: Path,
    timeout: float = 120.0,
    python: str = sys.executable,
) -> tuple[subprocess.Popen[bytes], ServiceInfo]:
    """Start ``jobprov up ARGS`` in the background (its own session, output to ``log_path``) and wait until it
    serves ``home``; for the demo, the tests and the benchmarks (``python``: another installation's interpreter,
    to measure it in the same run). :func:`stop` ends it as Ctrl-C would."""
    proc = subprocess.Popen(
        [python, "-m", "jobprov.cli.main", "up", *args],
        env=dict(env),
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while (info := ServiceInfo.read(home)) is None or info.pid != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise JobprovError(f"jobprov up did not come up; see {log_path}")
        time.sleep(0.2)
    return proc, info


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGINT (what Ctrl-C sends), then the whole session killed if it does not end in ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def up(
    settings: ProcessorSettings,
    *,
    home: Path,
    kafka_port: int = DEFAULT_KAFKA_PORT,
    api_port: int = DEFAULT_API_PORT,
    announce: Any = print,
    api_settings: ApiSettings | None = None,
    alert_settings: AlertSettings | None = None,
    broker_log: str = "durable",
) -> None:
    """Run the local service until stopped. ``settings`` are the worker's; source and sink are set here; the API
    (on 127.0.0.1) takes ``api_settings``; the alert scan (a thread of its own, never the worker's loop) and its
    webhooks take ``alert_settings``; ``broker_log`` is ``durable`` (on disk under ``<home>/broker``, kept across
    restarts and crashes) or ``memory`` (gone when the broker stops)."""
    from jobprov.embedded.durable import DurableBroker
    from jobprov.embedded.tansu import Broker, port_free
    from jobprov.embedded.trim import LogTrimmer
    from jobprov.query.alert_loop import Activity, AlertLoop, AlertLoopMetrics
    from jobprov.query.api import create_app
    from jobprov.query.changepoints import preload
    from jobprov.query.store import Store
    from jobprov.settings import EmitterSettings
    from jobprov.sinks.clickhouse.client import connect
    from jobprov.stream_processors.worker import run_worker

    # The state home and the store are this user's only (0700): the store holds whatever jobs reported.
    for private in (home, home / "store"):
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        private.chmod(0o700)
    other = running_service(home)
    if other is not None:
        raise JobprovError(f"jobprov up is already running for {home} (pid {other.pid}, API {other.api_url})")
    for name, port in (("--kafka-port", kafka_port), ("--api-port", api_port)):
        if not port_free(port):
            raise JobprovError(f"port {port} on 127.0.0.1 is in use; choose another with {name}")

    if broker_log not in BROKER_LOGS:
        raise JobprovError(f"--broker-log must be one of {', '.join(BROKER_LOGS)}, not {broker_log!r}")
    broker: Broker | DurableBroker = (
        DurableBroker(kafka_port, home / "broker", detached=True)
        if broker_log == "durable"
        else Broker(kafka_port, log_path=home / "broker.log", detached=True)
    )
    api: ApiThread | None = None
    scanner: AlertLoop | None = None
    trimmer: LogTrimmer | None = None
    alert_settings = alert_settings or AlertSettings()
    detector: threading.Thread | None = None
    if alert_settings.scan_interval_s > 0:  # its imports overlap the broker's and store's start
        detector = threading.Thread(target=preload, name="jobprov-detector-import", daemon=True)
        detector.start()
    try:
        broker.start()
        if isinstance(broker, DurableBroker):  # what the worker committed is in the store: the log lets it go
            trimmer = LogTrimmer(broker.store, broker.bootstrap, TOPIC, settings.app_id).start()
        store_url = f"chdb://{home / 'store'}"
        settings = _with(settings, source_url=broker.url(TOPIC), sink_url=store_url)
        # The worker's sink opens the store and migrates it; the API reads the same store in this process.
        from jobprov.stream_processors.comparability import load_registry
        from jobprov.stream_processors.worker import make_sink

        sink = make_sink(settings)
        reader = connect(store_url)  # the API's and the state rebuild's; the sink writes through its own
        registry = load_registry(settings.comparability_registry) if settings.comparability_registry else None
        ingest = EmitterSettings(url=broker.url(TOPIC))  # POST /api/v1/lineage (OpenLineage) sends here
        store = Store(reader, settings.clickhouse_database)
        activity = Activity()  # the scan waits for the worker to be quiet: ingestion first
        scanner = AlertLoop(store, ingest, alert_settings, registry, activity)
        api = ApiThread(
            create_app(store, registry, api_settings, ingest, notifier=scanner.notifier, scan_pass=scanner.scan_now),
            api_port,
        )
        api.start()
        if detector is not None:
            detector.join()  # up once the first scan cannot hold up the worker with imports
        scanner.start()
        info = ServiceInfo(os.getpid(), f"http://127.0.0.1:{api_port}", broker.url(TOPIC), store_url, time.time())
        info.write(home)
        reach = (
            "emitters' default: no configuration needed"
            if kafka_port == DEFAULT_KAFKA_PORT
            else f"emitters: JOBPROV_URL={info.kafka_url}"
        )
        kept = (
            f"{home / 'broker'} (kept across restarts and crashes)"
            if isinstance(broker, DurableBroker)
            else "in memory (what is not yet folded is lost if the service dies)"
        )
        announce(
            f"jobprov is up\n"
            f"  events:   {info.kafka_url}  ({reach})\n"
            f"  log:      {kept}\n"
            f"  store:    {store_url}\n"
            f"  web page: {info.api_url}/   API: {info.api_url}/docs\n"
            f"  metrics:  http://{settings.metrics_bind}:{settings.metrics_port}/metrics\n"
            f"Ctrl-C stops it."
        )
        # The worker's state comes from the store (the jobs it held when it stopped, and any older job an event
        # names), so jobs that span a restart fold onto what they were. On Ctrl-C it first folds what the broker
        # holds, so the store is current when the service is down (a memory log would lose it).
        run_worker(
            settings,
            sink,
            drain=True,
            own_all=True,  # the embedded store admits one worker: no group to join (docs/broker.md)
            on_signal=lambda: announce("stopping: folding what the broker holds"),
            collectors=[AlertLoopMetrics(scanner)],
            on_fold=activity.folded,
        )
    finally:
        # The broker first: an event it acknowledges from now on waits in its log for the next start (or, with a
        # memory log, is lost), so it stops taking them as soon as the worker is done.
        if scanner is not None:
            scanner.stop()
        if trimmer is not None:
            trimmer.stop()
        broker.stop(grace=0.5)
        log.debug("broker stopped")
        if api is not None:
            api.stop()
            log.debug("API stopped")
        info_now = ServiceInfo.read(home)
        if info_now is not None and info_now.pid == os.getpid():
            (home / INFO_FILE).unlink(missing_ok=True)


def _with(settings: ProcessorSettings, **changes: Any) -> ProcessorSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)
