"""The questions jobprov answers, asked either of a store directly or of a running query API.

Both backends return the same JSON-able documents: the HTTP API serves what :class:`LocalBackend` returns, and
:class:`HttpBackend` reads it back. So the CLI prints the same thing whether it opened the store itself or asked
the process that owns it (``jobprov up`` / ``jobprov serve``), and the web page reads the same documents.
A series line holds its points as columns (``times_ms``: epoch milliseconds, UTC; ``values``, ``job_ids``,
``event_ids``): see :class:`jobprov.query.lines.Line`.

A backend answers one thing, :meth:`Backend.ask`, a :mod:`jobprov.query.params` question; the named methods
(``series``, ``regressions``, ``job``, …) make the question from their arguments (positional in field order, or
by field name) and ask it. Locally a question's fields are the query function's arguments; over HTTP the
question says its own path and query parameters, so no parameter list is written here.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from jobprov.errors import ConfigError, JobprovError, QueryError
from jobprov.query import alerts as al
from jobprov.query import artifacts, attributes, lineage, runs
from jobprov.query import jobs as jq
from jobprov.query import params as p
from jobprov.query import series as q
from jobprov.query.store import Store, to_plain
from jobprov.settings import EmitterSettings, Secret
from jobprov.stream_processors.comparability import ComparabilityRegistry

if TYPE_CHECKING:
    from jobprov.query.notify import Notifier

T = TypeVar("T")


def _asks(question: type[p.Question], shape: Callable[[Any], T]) -> Callable[..., T]:
    """A method that makes ``question`` from its arguments and asks it, its answer as ``shape`` (list or dict)."""

    def method(self: Backend, *args: Any, **options: Any) -> T:
        return shape(self.ask(question(*args, **options)))

    method.__doc__ = f"{question.SUMMARY} (:class:`jobprov.query.params.{question.__name__}`)."
    return method


class Backend(ABC):
    """Answers the questions of :mod:`jobprov.query.params` with JSON-able documents."""

    @abstractmethod
    def ask(self, question: p.Question) -> Any:
        """The answer to ``question``: a list or dict of plain values."""

    metrics = _asks(p.Metrics, list)
    series = _asks(p.Series, list)
    bucket = _asks(p.Bucket, dict)
    compare = _asks(p.Compare, list)
    regressions = _asks(p.Regressions, list)
    check = _asks(p.Check, list)
    lineage = _asks(p.Lineage, list)
    outputs_preceded_by = _asks(p.Outputs, dict)
    find = _asks(p.FindJobs, list)
    find_artifacts = _asks(p.FindArtifacts, list)
    job = _asks(p.Job, dict)
    resources = _asks(p.Resources, list)
    artifact = _asks(p.Artifact, dict)
    group_jobs = _asks(p.GroupJobs, list)
    runs_table = _asks(p.RunsTable, list)
    run = _asks(p.Run, dict)
    compare_runs = _asks(p.CompareRuns, list)
    status = _asks(p.Status, dict)
    alerts = _asks(p.Alerts, list)

    @abstractmethod
    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Record a verdict on ``alert`` (an ``AlertTriaged`` event); the alert's document with the state sent."""

    @abstractmethod
    def scan_alerts(self) -> dict[str, Any]:
        """One alert scan now: ``{"buckets": scanned, "raised": [new alerts' documents], "seconds": ...}``."""


class LocalBackend(Backend):
    """Answers from a store this process has opened (regressions judged by ``registry``'s metric policies).
    Alert scans and triage send their events to ``events`` (None: alerts are read-only here) and tell
    ``notifier``'s webhooks of the alerts a scan raises; with ``scan_pass`` (the service's alert loop), a scan is
    one of its passes."""

    def __init__(
        self,
        store: Store,
        registry: ComparabilityRegistry | None = None,
        events: EmitterSettings | None = None,
        notifier: Notifier | None = None,
        scan_pass: Callable[[], al.ScanReport] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.events = events
        self.notifier = notifier
        self.scan_pass = scan_pass

    def ask(self, question: p.Question) -> Any:
        return _LOCAL[type(question)](self, question)

    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]:
        (found,) = al.list_alerts(self.store, alert=alert)  # UnknownNameError (with close ids) when there is none
        sent = al.triage(alert, state, self._events(), note=note, author=author)
        return {**found, "state": sent.state, "note": sent.note, "author": sent.author, "recorded": True}

    def scan_alerts(self) -> dict[str, Any]:
        from jobprov.query.alert_loop import scan_and_raise

        if self.scan_pass is not None:  # the service's loop: one memory of what was raised lately
            report = self.scan_pass()
        else:
            report = scan_and_raise(self.store, self._events(), registry=self.registry, notifier=self.notifier)
        now = datetime.now(UTC)
        raised = [al.raised_document(a, now) for a in report.raised]
        return {"buckets": report.buckets, "raised": raised, "seconds": round(report.seconds, 3)}

    def _events(self) -> EmitterSettings:
        if self.events is None:
            raise JobprovError("alerts are read-only here: no event destination is configured")
        return self.events


def _bucket(b: LocalBackend, r: p.Bucket) -> dict[str, Any]:
    bucket_id, keys = q.which_bucket(r.metric, r.provenance, b.registry)
    before, job = q.as_of(b.store, r.metric, bucket_id, r.as_of) if r.as_of else (None, None)
    found = q.baseline(
        b.store, r.metric, bucket_id, r.last, before=before, as_of_job=job, exclude_annotated=r.exclude_annotated
    )
    return {"bucket": bucket_id, "keys": keys, "baseline": to_plain(found)}


def _regressions(b: LocalBackend, r: p.Regressions) -> list[Any]:
    given = {k: v for k, v in r.arguments().items() if k != "onset_only"}
    found = q.regressions(b.store, **given, registry=b.registry)
    return list(to_plain([f for f in found if f.onset or not r.onset_only]))


def _lineage(b: LocalBackend, r: p.Lineage) -> list[Any]:
    walk = lineage.descendants if r.direction == "down" else lineage.ancestors
    return list(to_plain(walk(b.store, r.ref, depth=r.depth, stop_at=r.stop_at, containment=r.containment)))


# How this process answers each question: its fields are the query function's arguments.
_LOCAL: dict[type[p.Question], Callable[[LocalBackend, Any], Any]] = {
    p.Metrics: lambda b, r: to_plain(q.metric_names(b.store)),
    # A series' documents are written as they are: its points are many, and plain already.
    p.Series: lambda b, r: [line.document() for line in q.series(b.store, **r.arguments())],
    p.Bucket: _bucket,
    p.Compare: lambda b, r: to_plain(
        q.compare_jobs(b.store, r.job_a, r.job_b, ignore=() if r.include_env else ("env.",), namespace=r.namespace)
    ),
    p.Regressions: _regressions,
    p.Check: lambda b, r: to_plain(q.check(b.store, **r.arguments(), registry=b.registry)),
    p.Lineage: _lineage,
    p.Outputs: lambda b, r: lineage.outputs_preceded_by(b.store, r.where, r.ancestor, r.depth),
    p.FindJobs: lambda b, r: attributes.find_jobs(b.store, r.where, r.limit),
    p.FindArtifacts: lambda b, r: to_plain(artifacts.search(b.store, r.where, r.limit)),
    p.Job: lambda b, r: to_plain(jq.job_detail(b.store, r.job_id)),
    p.Resources: lambda b, r: to_plain(jq.resource_samples(b.store, r.job_id)),
    p.Artifact: lambda b, r: to_plain(artifacts.artifact(b.store, r.uri)),
    p.GroupJobs: lambda b, r: attributes.group_jobs(b.store, r.keys, r.where, r.limit),
    p.RunsTable: lambda b, r: runs.runs_table(b.store, r.run_ids, r.parameters, r.annotations),
    p.Run: lambda b, r: to_plain(runs.run(b.store, r.run_id)),
    p.CompareRuns: lambda b, r: to_plain(runs.compare_runs(b.store, r.run_a, r.run_b)),
    p.Status: lambda b, r: jq.status_counts(b.store),
    p.Alerts: lambda b, r: al.list_alerts(b.store, **r.arguments()),
}


class HttpBackend(Backend):
    """Asks a running query API (``jobprov up`` or ``jobprov serve``); standard library only."""

    def __init__(self, base_url: str, timeout: float = 60.0, token: Secret | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("api_url", f"{base_url!r}: expected http(s)://host:port")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token  # sent as a bearer token (an API with tokens configured asks for one)

    def ask(self, question: p.Question) -> Any:
        path, params = question.http_request()
        return self._get(f"/api/v1{path}", params)

    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]:
        body = {"state": state, "note": note, "author": author}
        return dict(self._post(f"/api/v1/alerts/{urllib.parse.quote(alert, safe='')}/triage", body))

    def scan_alerts(self) -> dict[str, Any]:
        return dict(self._post("/api/v1/alerts/scan", {}))

    def _get(self, path: str, params: Sequence[tuple[str, Any]] = ()) -> Any:
        query = urllib.parse.urlencode([(k, v) for k, v in params if v is not None])
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        return self._open(urllib.request.Request(url))  # noqa: S310 (http(s) only, checked in __init__)

    def _post(self, path: str, document: Any) -> Any:
        """A write route's answer: ``document`` posted as JSON (the API wants a token with the write scope)."""
        data = json.dumps(document).encode()
        return self._open(
            urllib.request.Request(  # noqa: S310 (http(s) only, checked in __init__)
                f"{self.base_url}{path}", data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
        )

    def _open(self, request: urllib.request.Request) -> Any:
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token.get()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only, checked)
                return json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("detail", exc.reason)
            except (ValueError, AttributeError):
                detail = exc.reason
            raise QueryError(_detail_text(detail)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise JobprovError(f"cannot reach the query API at {self.base_url}: {exc}") from exc


def _detail_text(detail: Any) -> str:
    """FastAPI's validation errors are a list of {loc, msg}; say them as one line."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    return str(detail)
