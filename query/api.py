"""The HTTP API over the query layer (FastAPI; the OpenAPI document is at ``/openapi.json``), and the web page
that reads it (``/``: a metric's series per bucket with regressions; ``/alerts``: alerts to triage; ``/jobs/{id}``:
one job).

Every endpoint is a thin shell over :class:`jobprov.query.backend.LocalBackend`, whose documents the CLI also
reads back through :class:`~jobprov.query.backend.HttpBackend`: parameters are validated by FastAPI and by the
query functions (a bad parameter is a 4xx naming it), values reach ClickHouse only as query parameters.
The process that serves the API owns the store; run it with ``jobprov serve`` or ``jobprov up``.

Bounds (:mod:`jobprov.query.limits`): each ``/api/`` request computes in a worker thread within
``api.query_timeout_s`` (503 past it), at most ``api.max_concurrent_queries`` at once (503 past that), its
queries stopped by the engine at the same time limit and at ``api.max_result_rows`` rows; a client that
disconnects cancels its request's remaining queries. Access (:mod:`jobprov.query.security`): a Host allow-list,
CORS only for configured origins, bearer tokens with read/write scopes. A NaN or infinite value (older stores
may hold them) is served as null.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from jobprov import __version__
from jobprov.errors import QueryError, QueryTimeout, UnknownNameError
from jobprov.query.alerts_api import add_alert_routes
from jobprov.query.backend import LocalBackend
from jobprov.query.limits import Budget, Slots, under_budget
from jobprov.query.notify import Notifier
from jobprov.query.security import HostAllowList, require_scope
from jobprov.query.store import Store, to_plain
from jobprov.query.tokens import Tokens
from jobprov.settings import ApiSettings, EmitterSettings
from jobprov.stream_processors.comparability import ComparabilityRegistry
from jobprov.stream_processors.provenance import CHANGE_KINDS

# The web page's files: nothing else is served under /static (an allow-list, not a file system lookup).
STATIC = {"chart.js": "text/javascript", "style.css": "text/css"}


def _pairs(raw: list[str] | None, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(status_code=422, detail=f"{name}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


class SeriesLine(BaseModel):
    """One line of a series, its points as columns of equal length (index i of each is one point)."""

    label: dict[str, str] = Field(description="The bucket's key values, or the group_by keys' values")
    bucket: str | None = Field(description="The bucket id; null for a line grouped by keys")
    unit: str | None
    times_ms: list[int] = Field(description="Point times in epoch milliseconds (UTC), in time order")
    values: list[float | None] = Field(description="null where the stored value is NaN or infinite")
    job_ids: list[str]
    event_ids: list[str]


def web_asset(name: str) -> str:
    """A file of the web page (HTML, JS, CSS), shipped inside the package."""
    return (resources.files("jobprov.query") / "web" / name).read_text(encoding="utf-8")


def _json(document: Any) -> bytes:
    try:
        return json.dumps(document, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:  # a NaN or infinity somewhere a document did not expect one: null, as everywhere else
        return json.dumps(to_plain(document), allow_nan=False, separators=(",", ":")).encode()


def create_app(
    store: Store,
    registry: ComparabilityRegistry | None = None,
    settings: ApiSettings | None = None,
    ingest: EmitterSettings | None = None,
    events: EmitterSettings | None = None,
    notifier: Notifier | None = None,
) -> FastAPI:
    """The API over ``store`` (metric policies from ``registry``; limits and access from ``settings``; default:
    loopback use, no tokens); with ``ingest`` (where events go), also ``POST /api/v1/lineage`` (OpenLineage), which
    takes a token with the write scope. Alert triage and scans (write scope) send their events to ``events``
    (default: ``ingest``) and tell ``notifier``'s webhooks of new alerts."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="jobprov",
        version=__version__,
        description="Job provenance: regression series per provenance bucket, comparisons, regressions, jobs.",
    )
    store = dataclasses.replace(
        store, max_execution_time=settings.query_timeout_s, max_result_rows=settings.max_result_rows
    )
    backend = LocalBackend(store, registry, events or ingest, notifier)
    slots = Slots(settings.max_concurrent_queries)
    app.state.tokens = Tokens.load(settings.tokens_file, settings.tokens)
    app.state.slots = slots
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(HostAllowList, allowed=settings.allowed_hosts)  # added last: runs first
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_scope("read"))])

    async def compute(request: Request, fn: Callable[[], Any]) -> Response:
        """``fn``'s document as JSON, computed in a worker thread within the request's budget; 503 when the
        budget runs out or every slot is taken; the budget cancelled when the client disconnects."""
        ticket = slots.take()
        if ticket is None:
            raise HTTPException(
                503,
                f"busy: {slots.limit} requests are computing (api.max_concurrent_queries); retry shortly",
                {"Retry-After": "1"},
            )
        budget = Budget(settings.query_timeout_s)

        def work() -> bytes:
            if not ticket.start():
                raise QueryTimeout("the request was abandoned before it started")
            try:
                return _json(under_budget(budget, fn))
            finally:
                ticket.finish()  # only once the thread has really ended: abandoned work keeps its slot

        outcome: dict[str, Any] = {}

        async def run() -> None:
            try:
                outcome["body"] = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            except Exception as exc:  # re-raised below, outside the task group
                outcome["error"] = exc
            group.cancel_scope.cancel()

        async def watch() -> None:
            while not await request.is_disconnected():
                await anyio.sleep(0.2)
            outcome["gone"] = True
            group.cancel_scope.cancel()

        try:
            with anyio.move_on_after(budget.seconds):
                async with anyio.create_task_group() as group:
                    group.start_soon(run)
                    group.start_soon(watch)
        finally:
            ticket.drop()  # a no-op once the thread started: it releases the slot when it ends
        if "error" in outcome:
            raise outcome["error"]
        if "body" in outcome:
            return Response(outcome["body"], media_type="application/json")
        budget.cancel()  # the thread stops at its next query
        if outcome.get("gone"):
            return Response(status_code=499)  # nobody is there to read it
        raise QueryTimeout(f"the request ran past {budget.seconds:g} s (api.query_timeout_s) and was stopped")

    if ingest is not None:
        from jobprov.query.lineage_ingest import lineage_router

        app.include_router(lineage_router(ingest), dependencies=[Depends(require_scope("write"))])

    @app.exception_handler(QueryError)
    async def bad_query(request: Any, exc: QueryError) -> JSONResponse:
        # A name the store does not know (a metric, an attribute key, a job) is not found; any other bad
        # parameter is a bad request.
        status = 404 if isinstance(exc, UnknownNameError) else 400
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.exception_handler(QueryTimeout)
    async def timed_out(request: Any, exc: QueryTimeout) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "5"})

    @app.get("/healthz", summary="Liveness: the process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the store answers")
    def readyz() -> dict[str, Any]:
        store.rows("SELECT 1")
        return {"status": "ready", "database": store.database}

    @api.get("/metrics", summary="Every metric with points: unit, points, buckets, newest point")
    async def get_metrics(request: Request) -> Response:
        return await compute(request, backend.metrics)

    # The model documents the lines; the response is written straight from the column lists (a long series is
    # tens of thousands of numbers: validating or re-encoding them element by element would cost more than the
    # query).
    @api.get(
        "/series/{metric:path}",
        summary="A metric over time, one line per bucket or chosen keys",
        response_model=list[SeriesLine],
    )
    async def get_series(
        request: Request,
        metric: str,
        group_by: Annotated[list[str] | None, Query(description="Provenance keys to group by")] = None,
        filter: Annotated[list[str] | None, Query(description="KEY=VALUE provenance filters")] = None,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: Annotated[str | None, Query(description="Only this bucket (an id, as /api/v1/buckets says)")] = None,
    ) -> Response:
        filters, excluded = _pairs(filter, "filter"), _pairs(exclude_annotated, "exclude_annotated")
        return await compute(
            request,
            lambda: backend.series(
                metric,
                group_by=group_by or (),
                since=since,
                until=until,
                filters=filters,
                exclude_annotated=excluded,
                bucket=bucket,
            ),
        )

    @api.get("/buckets/{metric:path}", summary="Which bucket this provenance belongs to, and its baseline")
    async def get_bucket(
        request: Request,
        metric: str,
        provenance: Annotated[list[str] | None, Query(description="KEY=VALUE")] = None,
        last: Annotated[int, Query(ge=1, le=100_000)] = 50,
        as_of: Annotated[
            str | None, Query(description="A job id or an ISO 8601 time: only points strictly before it")
        ] = None,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
    ) -> Response:
        pairs = _pairs(provenance, "provenance")
        excluded = _pairs(exclude_annotated, "exclude_annotated")
        return await compute(
            request, lambda: backend.bucket(metric, pairs, last, as_of=as_of, exclude_annotated=excluded)
        )

    @api.get("/compare", summary="Provenance keys and input checksums that differ between two jobs")
    async def get_compare(
        request: Request,
        a: str,
        b: str,
        include_env: bool = False,
        namespace: Annotated[
            str | None, Query(pattern=f"^({'|'.join(CHANGE_KINDS)})$", description="Only changes of this kind")
        ] = None,
    ) -> Response:
        return await compute(request, lambda: backend.compare(a, b, include_env, namespace))

    @api.get("/regressions/{metric:path}", summary="Changes of level per bucket: regressions and improvements")
    async def get_regressions(
        request: Request,
        metric: str,
        method: Annotated[
            str | None,
            Query(pattern="^(changepoint|rolling_median)$", description="Default: the metric's policy (changepoint)"),
        ] = None,
        window: Annotated[int, Query(ge=2, le=1000)] = 10,
        k: Annotated[float, Query(ge=1, le=1000, description="Robust deviations that count (>= 1)")] = 4.0,
        min_points: Annotated[int, Query(ge=2, le=10_000, description="Points of a bucket before any is judged")] = 10,
        onset_only: bool = True,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
    ) -> Response:
        excluded = _pairs(exclude_annotated, "exclude_annotated")
        return await compute(
            request,
            lambda: backend.regressions(
                metric,
                window=window,
                k=k,
                min_points=min_points,
                onset_only=onset_only,
                exclude_annotated=excluded,
                method=method,
            ),
        )

    @api.get("/check", summary="A job's points against their buckets' current level (CI gating)")
    async def get_check(
        request: Request,
        job: Annotated[str | None, Query(description="A job id")] = None,
        metric: Annotated[str | None, Query(description="Only this metric (required with bucket)")] = None,
        bucket: Annotated[str | None, Query(description="Judge the newest job of this bucket")] = None,
    ) -> Response:
        return await compute(request, lambda: backend.check(job, metric=metric, bucket=bucket))

    @api.get("/lineage", summary="Ancestors or descendants of a job or an artifact")
    async def get_lineage(
        request: Request,
        ref: str,
        direction: Annotated[str, Query(pattern="^(up|down)$")] = "up",
        depth: Annotated[int, Query(ge=1, le=50)] = 10,
        stop_at: Annotated[list[str] | None, Query(description="KEY=VALUE: do not go past such jobs")] = None,
        containment: Annotated[bool, Query(description="Follow parent jobs and workflows too")] = False,
    ) -> Response:
        stop = _pairs(stop_at, "stop_at")
        return await compute(
            request,
            lambda: backend.lineage(ref, down=direction == "down", depth=depth, stop_at=stop, containment=containment),
        )

    @api.get("/lineage/outputs", summary="Outputs of the jobs that have an ancestor job matching a query")
    async def get_outputs_preceded_by(
        request: Request,
        where: Annotated[list[str], Query(description='The jobs, e.g. "job.name = softmean"')],
        ancestor: Annotated[list[str], Query(description='Their ancestor, e.g. "job.name = align_warp"')],
        depth: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> Response:
        return await compute(request, lambda: backend.outputs_preceded_by(where, ancestor, depth))

    @api.get("/jobs", summary="Jobs matching every where-group (ATTR OP VALUE | …)")
    async def get_jobs(
        request: Request,
        where: Annotated[list[str], Query(description='e.g. "job.name = softmean", "band = r | band = i"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Response:
        return await compute(request, lambda: backend.find(where, limit=limit))

    @api.get("/artifacts", summary="Artifacts matching every where-group")
    async def get_artifacts(
        request: Request,
        where: Annotated[list[str], Query(description='e.g. "relation = produced", "uri ~ s3://bucket/"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Response:
        return await compute(request, lambda: backend.find(where, artifacts=True, limit=limit))

    # Job ids may hold "/" (workflow tools name jobs run/node): the id is a path parameter that spans segments,
    # and the resources route comes first so that ".../resources" is not read as part of an id.
    @api.get("/jobs/{job_id:path}/resources", summary="A job's resource samples in time order")
    async def get_resources(request: Request, job_id: str) -> Response:
        return await compute(request, lambda: backend.resources(job_id))

    @api.get("/jobs/{job_id:path}", summary="Everything about one job")
    async def get_job(request: Request, job_id: str) -> Response:
        def detail() -> dict[str, Any]:
            try:
                return backend.job(job_id)
            except UnknownNameError:
                raise
            except QueryError as exc:
                raise UnknownNameError(str(exc)) from exc

        return await compute(request, detail)

    @api.get("/artifact", summary="One artifact: producers, consumers, revisions, annotations")
    async def get_artifact(request: Request, uri: Annotated[str, Query(description="The artifact's URI")]) -> Response:
        return await compute(request, lambda: backend.artifact(uri))

    @api.get("/job-groups", summary="Jobs grouped by provenance keys or job columns, counted per status")
    async def get_job_groups(
        request: Request,
        key: Annotated[list[str], Query(description='e.g. "param.band", "sys.host", "job.kind"')],
        where: Annotated[list[str] | None, Query(description="Only jobs matching every where-group")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Response:
        return await compute(request, lambda: backend.group_jobs(key, where or (), limit))

    @api.get("/runs", summary="Runs side by side: status, members, chosen parameters and annotations")
    async def get_runs_table(
        request: Request,
        run: Annotated[list[str], Query(description="Run ids")],
        param: Annotated[list[str] | None, Query(description="Parameters to show, e.g. model")] = None,
        annotation: Annotated[list[str] | None, Query(description="Annotation keys to show")] = None,
    ) -> Response:
        return await compute(request, lambda: backend.runs_table(run, param or (), annotation or ()))

    @api.get("/runs/{run_id:path}", summary="A run and its members: program, parameters, status, artifacts")
    async def get_run(request: Request, run_id: str) -> Response:
        return await compute(request, lambda: backend.run(run_id))

    @api.get("/compare-runs", summary="How two runs differ: programs, parameters, inputs, outputs, structure")
    async def get_compare_runs(request: Request, a: str, b: str) -> Response:
        return await compute(request, lambda: backend.compare_runs(a, b))

    @api.get("/status", summary="Jobs by status")
    async def get_status(request: Request) -> Response:
        return await compute(request, backend.status)

    write = APIRouter(prefix="/api/v1", dependencies=[Depends(require_scope("write"))])
    add_alert_routes(api, write, backend, compute)
    app.include_router(api)
    app.include_router(write)

    # The web page: static files that read the API above (no build step, no third-party scripts).
    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(web_asset("index.html"))

    @app.get("/alerts", include_in_schema=False)
    def alerts_page() -> HTMLResponse:
        return HTMLResponse(web_asset("alerts.html"))

    @app.get("/jobs/{job_id:path}", include_in_schema=False)
    def job_page(job_id: str) -> HTMLResponse:
        return HTMLResponse(web_asset("job.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        # Only the page's own files, by exact name: anything else (other files, odd bytes, paths) is not found.
        kind = STATIC.get(name)
        if kind is None:
            raise HTTPException(status_code=404, detail="no such static file")
        return Response(web_asset(name), media_type=kind)

    return app
