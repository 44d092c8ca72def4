"""The worker's HTTP endpoint: Prometheus metrics at ``/metrics`` and liveness at ``/healthz``.

Liveness means the worker's event loop still turns: a timer in the loop beats every few seconds, and so does
the processor while it waits out a slow or unreachable store (backpressure is waiting, not hanging). When no
beat has come for ``stale_after_s``, ``/healthz`` answers 503 and an orchestrator restarts the worker. The
exporter alone would keep answering from its own thread however stuck the loop is.
"""

from __future__ import annotations

import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class Liveness:
    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self._last = time.monotonic()  # starting counts as alive, for one stale period

    def beat(self) -> None:
        self._last = time.monotonic()

    @property
    def silent_s(self) -> float:
        return time.monotonic() - self._last

    @property
    def alive(self) -> bool:
        return self.silent_s < self.stale_after_s


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a line
        return


def serve(port: int, bind: str, registry: Any, liveness: Liveness) -> WSGIServer:
    """Serve ``/healthz`` and (every other path) the registry's metrics from a daemon thread."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            alive = liveness.alive
            status = "200 OK" if alive else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            word = "ok" if alive else "stalled"
            return [f"{word}: last beat {liveness.silent_s:.1f} s ago\n".encode()]
        return metrics(environ, start_response)

    server = make_server(bind, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="jobprov-metrics", daemon=True).start()
    return server
