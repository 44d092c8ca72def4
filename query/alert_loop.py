"""Where alerts come from: a scan that raises them and tells the webhooks, run on demand or periodically.

:func:`scan_and_raise` is one pass: the detector over the buckets that received points (``query/alerts.py``),
an ``AlertRaised`` event per new change through the emitter's transport, a notification per new alert (queued:
the notifier posts from its own thread). :class:`AlertLoop` runs passes every ``alerts.scan_interval_s`` in a
daemon thread of `jobprov up`, never in the worker's fold loop: the worker only folds the events the scan sends,
like any others. Each pass looks at the buckets whose jobs' events the store took since the previous pass began
(less a margin for flushes in flight); the first pass looks at every bucket. A pass that fails is logged and the
next one starts from the same point, so nothing is missed.

Ingestion comes first: the detector is CPU-bound Python, and a pass run while the worker beside it folds takes the
interpreter from it. With an :class:`Activity` the worker keeps, a pass waits until the worker has been quiet for a
second, for at most one interval (so a worker that never rests delays alerts by an interval, never forever).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from jobprov.errors import JobprovError
from jobprov.query.alerts import ScanReport, raise_alerts, raised_document, scan
from jobprov.query.notify import Notifier, parse_webhook
from jobprov.query.store import Store
from jobprov.settings import AlertSettings, EmitterSettings
from jobprov.stream_processors.comparability import ComparabilityRegistry

log = logging.getLogger("jobprov.alerts")

# Points a flush had in flight when a pass began are stored with an ingestion time a little before it.
MARGIN = timedelta(seconds=30)
FIRST_PASS_S = 5.0
RECENT = 10_000  # alert ids a loop remembers having raised
QUIET_S = 1.0  # a worker that has folded nothing for this long is quiet


def notifier_from(settings: AlertSettings) -> Notifier | None:
    """The notifier the settings configure; None without webhooks."""
    if not settings.webhooks:
        return None
    hooks = [parse_webhook(entry, f"alerts.webhooks[{i}]") for i, entry in enumerate(settings.webhooks)]
    return Notifier(
        hooks,
        timeout_s=settings.webhook_timeout_s,
        attempts=settings.webhook_attempts,
        backoff_s=settings.webhook_backoff_s,
        max_queue=settings.webhook_queue,
    )


def scan_and_raise(
    store: Store,
    events: EmitterSettings,
    *,
    registry: ComparabilityRegistry | None = None,
    notifier: Notifier | None = None,
    since: datetime | None = None,
    recent: dict[str, None] | None = None,
) -> ScanReport:
    """One pass: scan, send the new alerts' events, queue their notifications. Raises JobprovError when the
    events could not be handed to the broker or the spool (then nobody is notified: the next pass tries again).

    ``recent`` (kept by the caller across passes, in raising order) holds the alerts raised lately: the store shows
    an alert only once the worker has folded its event, and a pass before that must neither send it again nor
    notify twice."""
    report = scan(store, registry, since=since)
    if recent is not None:
        report.raised = [a for a in report.raised if a.alert_id not in recent]
    now = datetime.now(UTC)
    delivery = raise_alerts(report.raised, events, now)
    if delivery.lost:
        raise JobprovError(f"{delivery.lost} alert events lost: {'; '.join(delivery.errors[:3])}")
    if notifier is not None:
        for alert in report.raised:
            notifier.notify(raised_document(alert, now))
    if recent is not None:
        recent.update(dict.fromkeys(a.alert_id for a in report.raised))
        for old in list(recent)[: max(0, len(recent) - RECENT)]:
            del recent[old]
    return report


class Activity:
    """When the worker beside a loop last folded a batch (the worker calls :meth:`folded`; any thread may ask
    :meth:`busy`)."""

    def __init__(self, quiet_s: float = QUIET_S) -> None:
        self.quiet_s = quiet_s
        self._last = float("-inf")

    def folded(self) -> None:
        self._last = time.monotonic()

    def busy(self) -> bool:
        return time.monotonic() - self._last < self.quiet_s


class AlertLoop:
    """:func:`scan_and_raise` every ``interval_s`` in a daemon thread, until :meth:`stop`; each pass first waits for
    ``activity`` (the worker's) to be quiet, for at most ``interval_s``."""

    def __init__(
        self,
        store: Store,
        events: EmitterSettings,
        settings: AlertSettings,
        registry: ComparabilityRegistry | None = None,
        activity: Activity | None = None,
    ) -> None:
        self.store, self.events, self.registry = store, events, registry
        self.activity = activity
        self.interval_s = settings.scan_interval_s
        self.notifier = notifier_from(settings)
        self.passes = self.failures = self.raised = self.deferrals = 0
        self.last: ScanReport | None = None
        self._since: datetime | None = None
        self._recent: dict[str, None] = {}
        self._lock = threading.Lock()  # one pass at a time: the loop's, or one asked through the API
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobprov-alert-scan", daemon=True)

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.notifier is not None:
            self.notifier.close(timeout)

    def run_once(self) -> ScanReport | None:
        began = datetime.now(UTC)
        try:
            report = self._pass(self._since)
        except Exception as exc:  # the loop must outlive a store or broker hiccup; the next pass covers this one
            log.warning("alert scan failed: %s", exc)
            self.failures += 1
            return None
        self._since = began - MARGIN
        if report.raised:
            log.info("alert scan: %d buckets, %d new alerts", report.buckets, len(report.raised))
        return report

    def scan_now(self) -> ScanReport:
        """A pass over every bucket now (``POST /api/v1/alerts/scan``), remembering with the loop's passes what was
        raised lately: an alert one of them raised is neither sent again nor notified twice by the other."""
        return self._pass(None)

    def _pass(self, since: datetime | None) -> ScanReport:
        with self._lock:
            report = scan_and_raise(
                self.store,
                self.events,
                registry=self.registry,
                notifier=self.notifier,
                since=since,
                recent=self._recent,
            )
            self.passes += 1
            self.raised += len(report.raised)
            self.last = report  # what the metrics show of the last pass, the loop's or one asked through the API
        return report

    def _run(self) -> None:
        delay = min(self.interval_s, FIRST_PASS_S)  # the first pass soon after start: it covers every bucket
        while not self._stop.wait(delay):
            self._wait_for_quiet()
            if self._stop.is_set():
                return
            self.run_once()
            delay = self.interval_s

    def _wait_for_quiet(self) -> None:
        """Until the worker is quiet, :meth:`stop` is called, or an interval has passed."""
        if self.activity is None or not self.activity.busy():
            return
        self.deferrals += 1
        until = time.monotonic() + self.interval_s
        while self.activity.busy() and time.monotonic() < until and not self._stop.wait(0.2):
            pass


class AlertLoopMetrics:
    """The loop's and its notifier's counts as Prometheus metrics, read at each scrape (a custom collector: the
    loop keeps plain counts and needs no Prometheus client of its own). Registered beside the worker's."""

    def __init__(self, loop: AlertLoop) -> None:
        self.loop = loop

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        loop, notifier = self.loop, self.loop.notifier
        yield CounterMetricFamily("jobprov_alert_scans", "Alert scan passes done", value=loop.passes)
        yield CounterMetricFamily("jobprov_alert_scan_failures", "Alert scan passes that failed", value=loop.failures)
        yield CounterMetricFamily(
            "jobprov_alert_scan_deferrals",
            "Alert scan passes that waited for the worker to be quiet",
            value=loop.deferrals,
        )
        yield CounterMetricFamily("jobprov_alerts_raised", "Alerts the scan raised", value=loop.raised)
        last = loop.last
        yield GaugeMetricFamily(
            "jobprov_alert_scan_seconds", "Duration of the last alert scan pass", value=last.seconds if last else 0.0
        )
        yield GaugeMetricFamily(
            "jobprov_alert_scan_buckets", "Buckets the last scan pass looked at", value=last.buckets if last else 0
        )
        sent = CounterMetricFamily(
            "jobprov_alert_notifications", "Alert notifications by outcome (webhook deliveries)", labels=["outcome"]
        )
        for outcome in ("delivered", "failed", "dropped"):
            sent.add_metric([outcome], getattr(notifier, outcome) if notifier is not None else 0)
        yield sent
