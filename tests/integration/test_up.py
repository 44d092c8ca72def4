"""`jobprov up`: broker, worker, embedded store and API in one command; the CLI asks it; data survives a restart."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobprov.embedded.service import ServiceInfo, launch, stop
from jobprov.embedded.tansu import free_port

JOBPROV = [sys.executable, "-m", "jobprov.cli.main"]
EMIT = f"{sys.executable} -m jobprov.cli.main emit"


class Up:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.kafka_port, self.api_port, self.metrics_port = free_port(), free_port(), free_port()
        self.env = {
            **os.environ,
            "JOBPROV_HOME": str(home),
            "JOBPROV_URL": f"kafka://127.0.0.1:{self.kafka_port}/jobprov.events",
            "JOBPROV_CAPTURE_PACKAGES": "0",
        }
        self.env.pop("JOBPROV_PROCESSOR_SINK_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        args = ["--kafka-port", str(self.kafka_port), "--api-port", str(self.api_port),
                "--metrics-port", str(self.metrics_port), "--partitions", "2"]  # fmt: skip
        self.proc, _ = launch(args, env=self.env, home=self.home, log_path=self.home.parent / "up.out", timeout=90)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        return stop(self.proc)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*JOBPROV, *args], env=self.env, capture_output=True, text=True, check=check, timeout=120)

    def wait_for_jobs(self, count: int, timeout: float = 60, *, succeeded: int = 0) -> dict[str, int]:
        """The status counts once ``count`` jobs (``succeeded`` of them succeeded) show, or at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            counts = json.loads(self.cli("query", "status", "--format", "json").stdout or "{}")
            shown = sum(counts.values()) >= count and counts.get("succeeded", 0) >= succeeded
            if shown or time.monotonic() > deadline:
                return dict(counts)
            time.sleep(0.5)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Up]:
    up = Up(tmp_path / "home").start()
    try:
        yield up
    finally:
        up.stop()


def _scraped(port: int, name: str) -> float:
    from jobprov.stream_processors.metrics import scrape_sum

    return scrape_sum(port, name)


def _broker_alive(port: int) -> bool:
    found = subprocess.run(["pgrep", "-f", f"tansu broker.*:{port}"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_up_serves_jobs_end_to_end_and_stops_cleanly(service: Up) -> None:
    info = ServiceInfo.read(service.home)
    assert info is not None and info.api_url == f"http://127.0.0.1:{service.api_port}"
    # The state home, the store and up.json are this user's only.
    assert stat.S_IMODE(service.home.stat().st_mode) == 0o700
    assert stat.S_IMODE((service.home / "store").stat().st_mode) == 0o700
    assert stat.S_IMODE((service.home / "up.json").stat().st_mode) == 0o600
    with urllib.request.urlopen(f"{info.api_url}/readyz", timeout=10) as response:
        assert json.load(response)["status"] == "ready"

    # The alert scan's metrics are served beside the worker's, and its first pass comes soon after the start.
    deadline = time.monotonic() + 60
    while _scraped(service.metrics_port, "jobprov_alert_scans_total") < 1:
        assert time.monotonic() < deadline, "no alert scan pass"
        time.sleep(0.5)
    assert _scraped(service.metrics_port, "jobprov_alert_scan_failures_total") == 0
    assert _scraped(service.metrics_port, 'jobprov_alert_notifications_total{outcome="delivered"}') == 0

    service.cli("run", "--name", "wrapped", "-p", "dataset=hsc", "--", "sh", "-c", f"{EMIT} metric AM1 3.5")
    service.cli("run", "--name", "broken", "--", "sh", "-c", "exit 3", check=False)
    assert service.wait_for_jobs(2) == {"succeeded": 1, "failed": 1}

    # The query verbs go through the API: the store is the service's, and opening it here would fail.
    series = json.loads(service.cli("query", "series", "AM1", "--format", "json").stdout)
    assert [value for line in series for value in line["values"]] == [3.5]
    metrics = json.loads(service.cli("query", "metrics", "--format", "json").stdout)
    assert [(m["metric"], m["points"]) for m in metrics] == [("AM1", 1)]
    named = service.cli("query", "--store", info.store_url, "status", "--format", "json")
    assert json.loads(named.stdout) == {"succeeded": 1, "failed": 1}

    # Another process that wants the store itself gets a clear message, not the engine's lock error.
    other = service.cli("db", "migrate", "--url", info.store_url, check=False)
    assert other.returncode != 0
    assert "open in another jobprov process" in other.stderr and "lock" not in other.stderr.lower()
    second = service.cli("up", "--kafka-port", str(free_port()), "--api-port", str(free_port()), check=False)
    assert second.returncode != 0 and "already running" in second.stderr

    assert service.stop() == 0
    assert not (service.home / "up.json").exists()
    assert not _broker_alive(service.kafka_port)
    assert "stopping: folding what the broker holds" in (service.home.parent / "up.out").read_text()


def test_a_killed_up_leaves_no_broker_behind_and_starts_again(tmp_path: Path) -> None:
    first = Up(tmp_path / "home").start()
    assert first.proc is not None
    first.cli("run", "--name", "before-the-kill", "--", "true")
    assert first.wait_for_jobs(1) == {"succeeded": 1}
    first.proc.kill()  # SIGKILL: no handler runs
    first.proc.wait()
    deadline = time.monotonic() + 10
    while _broker_alive(first.kafka_port):
        assert time.monotonic() < deadline, "the broker outlived its owner"
        time.sleep(0.1)
    second = Up(tmp_path / "home")
    second.kafka_port = first.kafka_port  # the same port: nothing holds it any more
    second.env["JOBPROV_URL"] = first.env["JOBPROV_URL"]
    second.start()
    try:
        second.cli("run", "--name", "after-the-kill", "--", "true")
        assert second.wait_for_jobs(2) == {"succeeded": 2}
    finally:
        assert second.stop() == 0


def test_data_survives_a_restart_and_queries_work_without_the_service(tmp_path: Path) -> None:
    first = Up(tmp_path / "home").start()
    try:
        first.cli("run", "--name", "before-restart", "--", "true")
        # A job that spans the restart: submitted now, finished after it (the broker forgets everything).
        first.cli("emit", "submitted", "--job-id", "spanning", "--name", "long-haul", "--kind", "hpc",
                  "--submitter", "alice")  # fmt: skip
        counts = first.wait_for_jobs(2)
        assert counts["succeeded"] == 1 and sum(counts.values()) == 2
    finally:
        assert first.stop() == 0

    # Stopped: the CLI opens the store itself.
    direct = first.cli("query", "status", "--format", "json")
    assert json.loads(direct.stdout) == {"succeeded": 1, "submitted": 1}

    second = Up(tmp_path / "home").start()
    try:
        second.cli("run", "--name", "after-restart", "--", "true")
        second.cli("emit", "finished", "--job-id", "spanning", "--status", "succeeded", "--exit-code", "0")
        # Waits for the spanning job's end too: the first job can show before it is folded.
        assert second.wait_for_jobs(3, succeeded=3) == {"succeeded": 3}
        names = json.loads(second.cli("query", "find", "--where", "job.name ~ after", "--format", "json").stdout)
        assert len(names) == 1
        # The worker rebuilt the job's state from the store: what came before the restart is still there.
        spanning = json.loads(second.cli("query", "job", "spanning", "--format", "json").stdout)
        assert (spanning["name"], spanning["kind"], spanning["submitter"]) == ("long-haul", "hpc", "alice")
        assert spanning["status"] == "succeeded" and spanning["event_count"] == 2  # both halves folded together
    finally:
        second.stop()


def test_query_without_a_store_or_service_says_what_to_do(tmp_path: Path) -> None:
    env = {**os.environ, "JOBPROV_HOME": str(tmp_path / "empty")}
    env.pop("JOBPROV_PROCESSOR_SINK_URL", None)
    result = subprocess.run([*JOBPROV, "query", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "start `jobprov up`" in result.stderr and "--store" in result.stderr


def test_query_api_option_reports_an_unreachable_api(tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [*JOBPROV, "query", "--api", f"http://127.0.0.1:{port}", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"cannot reach the query API at http://127.0.0.1:{port}" in result.stderr
