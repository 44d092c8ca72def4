"""The questions jobprov answers, asked either of a store directly or of a running query API.

Both backends return the same JSON-able documents: the HTTP API serves what :class:`LocalBackend` returns, and
:class:`HttpBackend` reads it back. So the CLI prints the same thing whether it opened the store itself or asked
the process that owns it (``jobprov up`` / ``jobprov serve``), and the web page reads the same documents.
A series line holds its points as columns (``times_ms``: epoch milliseconds, UTC; ``values``, ``job_ids``,
``event_ids``): see :class:`jobprov.query.lines.Line`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from jobprov.errors import ConfigError, JobprovError, QueryError
from jobprov.query import alerts as al
from jobprov.query import artifacts, attributes, lineage, runs
from jobprov.query import jobs as jq
from jobprov.query import series as q
from jobprov.query.store import Store, to_plain
from jobprov.settings import EmitterSettings, Secret
from jobprov.stream_processors.comparability import ComparabilityRegistry

if TYPE_CHECKING:
    from jobprov.query.notify import Notifier


class Backend(Protocol):
    def series(
        self,
        metric: str,
        *,
        group_by: Sequence[str] = (),
        filters: Mapping[str, str] | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def bucket(
        self,
        metric: str,
        provenance: Mapping[str, str],
        last: int = 50,
        *,
        as_of: str | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def compare(
        self, job_a: str, job_b: str, include_env: bool = False, namespace: str | None = None
    ) -> list[dict[str, Any]]: ...

    def regressions(
        self,
        metric: str,
        *,
        window: int = 10,
        k: float = 4.0,
        min_points: int = 10,
        onset_only: bool = True,
        exclude_annotated: Mapping[str, str] | None = None,
        method: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def check(
        self, job_id: str | None = None, *, metric: str | None = None, bucket: str | None = None
    ) -> list[dict[str, Any]]: ...

    def lineage(
        self,
        ref: str,
        *,
        down: bool = False,
        depth: int = 10,
        stop_at: Mapping[str, str] | None = None,
        containment: bool = False,
    ) -> list[dict[str, Any]]: ...

    def find(self, where: Sequence[str], *, artifacts: bool = False, limit: int = 1000) -> list[str]: ...

    def outputs_preceded_by(
        self, where: Sequence[str], ancestor: Sequence[str], depth: int = 20
    ) -> dict[str, list[str]]: ...

    def job(self, job_id: str) -> dict[str, Any]: ...

    def resources(self, job_id: str) -> list[dict[str, Any]]: ...

    def run(self, run_id: str) -> dict[str, Any]: ...

    def artifact(self, uri: str) -> dict[str, Any]: ...

    def group_jobs(self, keys: Sequence[str], where: Sequence[str] = (), limit: int = 1000) -> list[dict[str, Any]]: ...

    def compare_runs(self, run_a: str, run_b: str) -> list[dict[str, Any]]: ...

    def runs_table(
        self, run_ids: Sequence[str], parameters: Sequence[str] = (), annotations: Sequence[str] = ()
    ) -> list[dict[str, Any]]: ...

    def status(self) -> dict[str, int]: ...

    def metrics(self) -> list[dict[str, Any]]: ...

    def alerts(
        self, *, state: str | None = None, metric: str | None = None, alert: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]: ...

    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]: ...

    def scan_alerts(self) -> dict[str, Any]: ...


class LocalBackend:
    """Answers from a store this process has opened (regressions judged by ``registry``'s metric policies)."""

    def __init__(
        self,
        store: Store,
        registry: ComparabilityRegistry | None = None,
        events: EmitterSettings | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.events = events  # where alert events go (a scan's, a triage's); None: alerts can only be read
        self.notifier = notifier  # tells the webhooks of the alerts a scan raises

    def alerts(
        self, *, state: str | None = None, metric: str | None = None, alert: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return al.list_alerts(self.store, state=state, metric=metric, alert=alert, limit=limit)

    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]:
        (found,) = al.list_alerts(self.store, alert=alert)  # UnknownNameError (with close ids) when there is none
        sent = al.triage(alert, state, self._events(), note=note, author=author)
        return {**found, "state": sent.state, "note": sent.note, "author": sent.author, "recorded": True}

    def scan_alerts(self) -> dict[str, Any]:
        from jobprov.query.alert_loop import scan_and_raise

        report = scan_and_raise(self.store, self._events(), registry=self.registry, notifier=self.notifier)
        now = datetime.now(UTC)
        raised = [al.raised_document(a, now) for a in report.raised]
        return {"buckets": report.buckets, "raised": raised, "seconds": round(report.seconds, 3)}

    def _events(self) -> EmitterSettings:
        if self.events is None:
            raise JobprovError("alerts are read-only here: no event destination is configured")
        return self.events

    def series(
        self,
        metric: str,
        *,
        group_by: Sequence[str] = (),
        filters: Mapping[str, str] | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]:
        lines = q.series(
            self.store,
            metric,
            group_by=list(group_by) or None,
            since=since,
            until=until,
            filters=filters,
            exclude_annotated=exclude_annotated,
            bucket=bucket,
        )
        return [line.document() for line in lines]

    def bucket(
        self,
        metric: str,
        provenance: Mapping[str, str],
        last: int = 50,
        *,
        as_of: str | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        bucket_id, keys = q.which_bucket(metric, provenance, self.registry)
        before, job = q.as_of(self.store, metric, bucket_id, as_of) if as_of else (None, None)
        found = q.baseline(
            self.store, metric, bucket_id, last, before=before, as_of_job=job, exclude_annotated=exclude_annotated
        )
        return {"bucket": bucket_id, "keys": keys, "baseline": to_plain(found)}

    def compare(
        self, job_a: str, job_b: str, include_env: bool = False, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        ignore = () if include_env else ("env.",)
        return list(to_plain(q.compare_jobs(self.store, job_a, job_b, ignore=ignore, namespace=namespace)))

    def regressions(
        self,
        metric: str,
        *,
        window: int = 10,
        k: float = 4.0,
        min_points: int = 10,
        onset_only: bool = True,
        exclude_annotated: Mapping[str, str] | None = None,
        method: str | None = None,
    ) -> list[dict[str, Any]]:
        found = q.regressions(
            self.store,
            metric,
            method=method,
            window=window,
            k=k,
            min_points=min_points,
            exclude_annotated=exclude_annotated,
            registry=self.registry,
        )
        return list(to_plain([r for r in found if r.onset or not onset_only]))

    def check(
        self, job_id: str | None = None, *, metric: str | None = None, bucket: str | None = None
    ) -> list[dict[str, Any]]:
        return list(to_plain(q.check(self.store, job_id, metric=metric, bucket=bucket, registry=self.registry)))

    def lineage(
        self,
        ref: str,
        *,
        down: bool = False,
        depth: int = 10,
        stop_at: Mapping[str, str] | None = None,
        containment: bool = False,
    ) -> list[dict[str, Any]]:
        walk = lineage.descendants if down else lineage.ancestors
        return list(to_plain(walk(self.store, ref, depth=depth, stop_at=stop_at, containment=containment)))

    def find(self, where: Sequence[str], *, artifacts: bool = False, limit: int = 1000) -> list[str]:
        return (attributes.find_artifacts if artifacts else attributes.find_jobs)(self.store, list(where), limit)

    def outputs_preceded_by(
        self, where: Sequence[str], ancestor: Sequence[str], depth: int = 20
    ) -> dict[str, list[str]]:
        return lineage.outputs_preceded_by(self.store, list(where), list(ancestor), depth)

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(to_plain(jq.job_detail(self.store, job_id)))

    def resources(self, job_id: str) -> list[dict[str, Any]]:
        return list(to_plain(jq.resource_samples(self.store, job_id)))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(to_plain(runs.run(self.store, run_id)))

    def artifact(self, uri: str) -> dict[str, Any]:
        return dict(to_plain(artifacts.artifact(self.store, uri)))

    def group_jobs(self, keys: Sequence[str], where: Sequence[str] = (), limit: int = 1000) -> list[dict[str, Any]]:
        return attributes.group_jobs(self.store, list(keys), list(where), limit)

    def compare_runs(self, run_a: str, run_b: str) -> list[dict[str, Any]]:
        return list(to_plain(runs.compare_runs(self.store, run_a, run_b)))

    def runs_table(
        self, run_ids: Sequence[str], parameters: Sequence[str] = (), annotations: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        return runs.runs_table(self.store, list(run_ids), list(parameters), list(annotations))

    def status(self) -> dict[str, int]:
        return jq.status_counts(self.store)

    def metrics(self) -> list[dict[str, Any]]:
        return list(to_plain(q.metric_names(self.store)))


def _pairs(name: str, values: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [(name, f"{k}={v}") for k, v in (values or {}).items()]


class HttpBackend:
    """Asks a running query API (``jobprov up`` or ``jobprov serve``); standard library only."""

    def __init__(self, base_url: str, timeout: float = 60.0, token: Secret | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError("api_url", f"{base_url!r}: expected http(s)://host:port")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token  # sent as a bearer token (an API with tokens configured asks for one)

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

    def series(
        self,
        metric: str,
        *,
        group_by: Sequence[str] = (),
        filters: Mapping[str, str] | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]:
        params: list[tuple[str, Any]] = [("group_by", k) for k in group_by]
        params += _pairs("filter", filters) + _pairs("exclude_annotated", exclude_annotated)
        params += [("since", since.isoformat() if since else None), ("until", until.isoformat() if until else None)]
        params.append(("bucket", bucket))
        return list(self._get(f"/api/v1/series/{_seg(metric)}", params))

    def bucket(
        self,
        metric: str,
        provenance: Mapping[str, str],
        last: int = 50,
        *,
        as_of: str | None = None,
        exclude_annotated: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        params = [*_pairs("provenance", provenance), ("last", last), ("as_of", as_of)]
        return dict(
            self._get(f"/api/v1/buckets/{_seg(metric)}", params + _pairs("exclude_annotated", exclude_annotated))
        )

    def compare(
        self, job_a: str, job_b: str, include_env: bool = False, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        params = [("a", job_a), ("b", job_b), ("include_env", _flag(include_env)), ("namespace", namespace)]
        return list(self._get("/api/v1/compare", params))

    def regressions(
        self,
        metric: str,
        *,
        window: int = 10,
        k: float = 4.0,
        min_points: int = 10,
        onset_only: bool = True,
        exclude_annotated: Mapping[str, str] | None = None,
        method: str | None = None,
    ) -> list[dict[str, Any]]:
        params = [("window", window), ("k", k), ("min_points", min_points), ("onset_only", _flag(onset_only))]
        params.append(("method", method))
        return list(
            self._get(f"/api/v1/regressions/{_seg(metric)}", params + _pairs("exclude_annotated", exclude_annotated))
        )

    def check(
        self, job_id: str | None = None, *, metric: str | None = None, bucket: str | None = None
    ) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/check", [("job", job_id), ("metric", metric), ("bucket", bucket)]))

    def lineage(
        self,
        ref: str,
        *,
        down: bool = False,
        depth: int = 10,
        stop_at: Mapping[str, str] | None = None,
        containment: bool = False,
    ) -> list[dict[str, Any]]:
        params = [("ref", ref), ("direction", "down" if down else "up"), ("depth", depth)]
        params.append(("containment", _flag(containment)))
        return list(self._get("/api/v1/lineage", params + _pairs("stop_at", stop_at)))

    def find(self, where: Sequence[str], *, artifacts: bool = False, limit: int = 1000) -> list[str]:
        path = "/api/v1/artifacts" if artifacts else "/api/v1/jobs"
        return list(self._get(path, [*(("where", w) for w in where), ("limit", limit)]))

    def outputs_preceded_by(
        self, where: Sequence[str], ancestor: Sequence[str], depth: int = 20
    ) -> dict[str, list[str]]:
        params = [*(("where", w) for w in where), *(("ancestor", a) for a in ancestor), ("depth", depth)]
        return dict(self._get("/api/v1/lineage/outputs", params))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._get(f"/api/v1/jobs/{_seg(job_id)}"))

    def resources(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._get(f"/api/v1/jobs/{_seg(job_id)}/resources"))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self._get(f"/api/v1/runs/{_seg(run_id)}"))

    def artifact(self, uri: str) -> dict[str, Any]:
        return dict(self._get("/api/v1/artifact", [("uri", uri)]))

    def group_jobs(self, keys: Sequence[str], where: Sequence[str] = (), limit: int = 1000) -> list[dict[str, Any]]:
        params = [*(("key", k) for k in keys), *(("where", w) for w in where), ("limit", limit)]
        return list(self._get("/api/v1/job-groups", params))

    def compare_runs(self, run_a: str, run_b: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/compare-runs", [("a", run_a), ("b", run_b)]))

    def runs_table(
        self, run_ids: Sequence[str], parameters: Sequence[str] = (), annotations: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        params = [*(("run", r) for r in run_ids), *(("param", p) for p in parameters)]
        return list(self._get("/api/v1/runs", params + [("annotation", a) for a in annotations]))

    def status(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._get("/api/v1/status").items()}

    def metrics(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/metrics"))

    def alerts(
        self, *, state: str | None = None, metric: str | None = None, alert: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        params = [("state", state), ("metric", metric), ("alert", alert), ("limit", limit)]
        return list(self._get("/api/v1/alerts", params))

    def triage(self, alert: str, state: str, note: str | None = None, author: str | None = None) -> dict[str, Any]:
        return dict(
            self._post(f"/api/v1/alerts/{_seg(alert)}/triage", {"state": state, "note": note, "author": author})
        )

    def scan_alerts(self) -> dict[str, Any]:
        return dict(self._post("/api/v1/alerts/scan", {}))


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _detail_text(detail: Any) -> str:
    """FastAPI's validation errors are a list of {loc, msg}; say them as one line."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    return str(detail)
