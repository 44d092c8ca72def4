"""Webhook notifications of new alerts: a JSON POST per alert and receiver, from a background thread.

Receivers are configured as ``alerts.webhooks`` entries (:func:`parse_webhook`): ``https://host/path`` gets the
``generic`` body (the alert's document, the fields ``query alerts`` shows), ``slack=https://hooks.slack.com/...``
gets the ``slack`` body (``{"text": ...}``, which Slack's incoming webhooks and compatible receivers such as
Mattermost or Rocket.Chat take).

Guarantees:

- :meth:`Notifier.notify` never blocks and never raises: it queues one delivery per receiver and returns. The queue
  is bounded (``max_queue`` deliveries, retries included); past it a delivery is dropped, counted and logged.
- A delivery that fails (no connection, a timeout, HTTP 429 or 5xx) is tried again after ``backoff_s``, then twice
  that, and so on, ``attempts`` times in all; a retry waits in the queue, so a receiver that is down holds up the
  others only for its request timeout. Any other 4xx is the receiver refusing the body: not retried.
- Logs name a receiver by scheme, host and port only: a webhook URL's path is often its secret.
- Delivery is at most once per :meth:`notify` call, in no particular order; :meth:`close` waits for what is due now
  and drops retries still waiting (they are logged).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jobprov.errors import ConfigError

log = logging.getLogger("jobprov.notify")

TEMPLATES = ("generic", "slack")


@dataclass(frozen=True)
class Webhook:
    url: str
    template: str = "generic"

    @property
    def name(self) -> str:
        """What logs may say about the receiver: its origin, never its path or query."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def parse_webhook(entry: str, where: str) -> Webhook:
    """``URL`` (the generic body) or ``TEMPLATE=URL``; ConfigError naming ``where`` for anything else."""
    template, url = "generic", entry.strip()
    if not url.startswith(("http://", "https://")) and "=" in url:
        template, _, url = url.partition("=")
        template, url = template.strip(), url.strip()
        if template not in TEMPLATES:
            raise ConfigError(where, f"unknown template {template!r}: expected {' or '.join(TEMPLATES)} (TEMPLATE=URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:  # the value is not echoed: it may be secret
        raise ConfigError(
            where, f"expected http(s)://host/path, or TEMPLATE=URL with TEMPLATE {' or '.join(TEMPLATES)}"
        )
    return Webhook(url, template)


def body(alert: Mapping[str, Any], template: str) -> dict[str, Any]:
    """The JSON a receiver gets for ``alert`` (a document as ``query alerts`` gives it)."""
    if template == "generic":
        return {"alert": dict(alert)}
    return {"text": summary(alert)}


def summary(alert: Mapping[str, Any]) -> str:
    """One paragraph for people: what moved, where, by how much, since which job, and what changed."""
    label = ", ".join(f"{k}={v}" for k, v in sorted(alert.get("label", {}).items()) if v)
    unit = f" {alert['unit']}" if alert.get("unit") else ""
    before, size = float(alert["before"]), float(alert["size"])
    relative = f" ({alert['relative_size']:+.1%})" if alert.get("relative_size") is not None else ""
    changed = "; ".join(alert.get("changes") or []) or "nothing recorded"
    return (
        f"{alert['direction'].capitalize()} in {alert['metric']}{f' [{label}]' if label else ''}: "
        f"{before:.4g} → {before + size:.4g}{unit}{relative} from job {alert['first_bad_job']} "
        f"(last good: {alert['last_good_job']}). What changed: {changed}. Alert {alert['alert_id']}."
    )


@dataclass
class _Delivery:
    webhook: Webhook
    data: bytes
    attempt: int = 1


class Notifier:
    """Posts alerts to webhooks from one daemon thread (see the module's guarantees)."""

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        *,
        timeout_s: float = 5.0,
        attempts: int = 4,
        backoff_s: float = 1.0,
        max_queue: int = 1000,
    ) -> None:
        self.webhooks = list(webhooks)
        self.timeout_s, self.attempts, self.backoff_s, self.max_queue = timeout_s, attempts, backoff_s, max_queue
        self.delivered = self.failed = self.dropped = 0
        self._due: list[tuple[float, int, _Delivery]] = []  # a heap by due time
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="jobprov-notify", daemon=True)
        self._thread.start()

    def notify(self, alert: Mapping[str, Any]) -> None:
        """Queue ``alert`` for every receiver; never blocks, never raises."""
        try:
            for webhook in self.webhooks:
                data = json.dumps(body(alert, webhook.template), allow_nan=False).encode()
                self._queue(_Delivery(webhook, data), time.monotonic())
        except Exception as exc:  # a bad document must not reach the caller (the scan, the worker)
            log.warning("alert %s not notified: %s", alert.get("alert_id"), exc)

    def _queue(self, delivery: _Delivery, due: float) -> None:
        with self._cv:
            if len(self._due) >= self.max_queue:
                self.dropped += 1
                log.warning("notification to %s dropped: %d deliveries queued", delivery.webhook.name, self.max_queue)
                return
            heapq.heappush(self._due, (due, next(self._order), delivery))
            self._cv.notify()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; True if that happened within ``timeout`` (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is due now (within ``timeout``), drop retries still waiting, stop the thread."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    if self._stopping:
                        if self._due:
                            log.warning("%d notification retries dropped at shutdown", len(self._due))
                        self._due.clear()
                        self._cv.notify_all()
                        return
                    self._cv.wait(self._due[0][0] - now if self._due else None)
                _, _, delivery = heapq.heappop(self._due)
                self._busy = True
            try:
                self._deliver(delivery)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _deliver(self, delivery: _Delivery) -> None:
        retry, problem = self._post(delivery)
        if problem is None:
            self.delivered += 1
            return
        if retry and delivery.attempt < self.attempts:
            wait = self.backoff_s * 2 ** (delivery.attempt - 1)
            log.info("notification to %s failed (%s); retry %d in %.1fs", delivery.webhook.name, problem,
                     delivery.attempt, wait)  # fmt: skip
            delivery.attempt += 1
            self._queue(delivery, time.monotonic() + wait)
            return
        self.failed += 1
        log.warning("notification to %s failed after %d attempts: %s", delivery.webhook.name, delivery.attempt, problem)

    def _post(self, delivery: _Delivery) -> tuple[bool, str | None]:
        """(whether to retry, the problem or None when delivered)."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked: http(s) only (parse_webhook)
            delivery.webhook.url,
            data=delivery.data,
            headers={"Content-Type": "application/json", "User-Agent": "jobprov-alerts"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - as above
                response.read()
            return False, None
        except urllib.error.HTTPError as exc:
            return exc.code == 429 or exc.code >= 500, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a bad answer
            return True, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
