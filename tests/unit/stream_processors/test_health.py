"""The worker's /healthz: alive while beats come, 503 once they stop; /metrics unchanged beside it."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from jobprov.embedded.tansu import free_port
from jobprov.stream_processors.health import Liveness, serve


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_healthz_turns_503_when_the_beats_stop_and_200_when_they_resume() -> None:
    registry = CollectorRegistry()
    Counter("jobprov_probe_test_total", "a test counter", registry=registry).inc()
    liveness = Liveness(stale_after_s=0.3)
    port = free_port()
    server = serve(port, "127.0.0.1", registry, liveness)
    try:
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and body.startswith("ok: last beat")
        time.sleep(0.5)
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503 and body.startswith("stalled: last beat")
        liveness.beat()
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "jobprov_probe_test_total 1.0" in body
    finally:
        server.shutdown()
