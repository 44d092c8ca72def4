"""The HTTP API over the query layer (FastAPI; the OpenAPI document is at ``/openapi.json``), and the web page
that reads it (``/``: a metric's series per bucket with regressions; ``/alerts``: alerts to triage; ``/jobs/{id}``:
one job).

Every ``/api/v1`` route is a question of :mod:`jobprov.query.params` (its path, its query parameters with their
types, bounds and help, its summary), answered by :class:`jobprov.query.backend.LocalBackend`, whose documents
the CLI also reads back through :class:`~jobprov.query.backend.HttpBackend`: parameters are validated by FastAPI,
by the question and by the query functions (a bad parameter is a 4xx naming it), values reach ClickHouse only as
query parameters.
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
import inspect
import json
from collections.abc import Awaitable, Callable
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
from jobprov.query.alerts import ScanReport
from jobprov.query.alerts_api import add_alert_routes
from jobprov.query.backend import LocalBackend
from jobprov.query.limits import Budget, Slots, under_budget
from jobprov.query.notify import Notifier
from jobprov.query.params import QUESTIONS, ParameterError, Question, Series
from jobprov.query.security import HostAllowList, require_scope
from jobprov.query.store import Store, to_plain
from jobprov.query.tokens import Tokens
from jobprov.settings import ApiSettings, EmitterSettings
from jobprov.stream_processors.comparability import ComparabilityRegistry

# The web page's files: nothing else is served under /static (an allow-list, not a file system lookup).
STATIC = {"chart.js": "text/javascript", "style.css": "text/css"}


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
    scan_pass: Callable[[], ScanReport] | None = None,
) -> FastAPI:
    """The API over ``store`` (metric policies from ``registry``; limits and access from ``settings``; default:
    loopback use, no tokens); with ``ingest`` (where events go), also ``POST /api/v1/lineage`` (OpenLineage), which
    takes a token with the write scope. Alert triage and scans (write scope) send their events to ``events``
    (default: ``ingest``) and tell ``notifier``'s webhooks of new alerts; with ``scan_pass`` (the service's alert
    loop), a scan asked here is one of its passes."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="jobprov",
        version=__version__,
        description="Job provenance: regression series per provenance bucket, comparisons, regressions, jobs.",
    )
    store = dataclasses.replace(
        store, max_execution_time=settings.query_timeout_s, max_result_rows=settings.max_result_rows
    )
    backend = LocalBackend(store, registry, events or ingest, notifier, scan_pass)
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

    # Every question of jobprov.query.params is a GET route: its path from the question, its query parameters
    # from the question's fields (names, types, bounds and help), its answer from the backend. The series model
    # documents the lines; the response is written straight from the column lists (a long series is tens of
    # thousands of numbers: validating or re-encoding them element by element would cost more than the query).
    for question in QUESTIONS:
        _route(api, question, compute, backend)
    write = APIRouter(prefix="/api/v1", dependencies=[Depends(require_scope("write"))])
    add_alert_routes(write, backend, compute)

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


# The query-parameter type FastAPI reads for each kind of field (pairs are KEY=VALUE texts, parsed by the
# question, so that a bad pair is a 422 naming the parameter).
_HTTP_TYPES: dict[str, Any] = {
    "text": str, "int": int, "float": float, "flag": bool, "time": datetime, "pairs": list[str], "many": list[str],
    "choice": str,
}  # fmt: skip
RESPONSE_MODELS: dict[type[Question], Any] = {Series: list[SeriesLine]}


def http_parameters(question: type[Question]) -> Callable[..., Question]:
    """A FastAPI dependency that reads ``question``'s fields from the path and the query string (types, bounds,
    patterns and help from the question) and makes the question; a value the question refuses is a 422 naming
    the HTTP parameter and the reason."""
    in_path = question.path_fields()
    specs = {spec.name: spec for spec in question.specs()}
    parameters = []
    for spec in specs.values():
        param = spec.param
        if spec.name in in_path:
            parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, annotation=str))
            continue
        kind = _HTTP_TYPES[param.kind]
        required = spec.default is dataclasses.MISSING
        query = Query(
            alias=spec.http_name if spec.http_name != spec.name else None,
            description=param.help,
            ge=param.bounds.low if param.bounds else None,
            le=param.bounds.high if param.bounds else None,
            pattern=f"^({'|'.join(param.choices)})$" if param.choices else None,
        )
        default = inspect.Parameter.empty if required else (None if param.kind in ("pairs", "many") else spec.default)
        annotation = Annotated[kind if required or default is not None else kind | None, query]  # type: ignore[valid-type]
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))  # fmt: skip

    def make(**values: Any) -> Question:
        try:
            return question.from_raw(values)
        except ParameterError as exc:
            raise HTTPException(422, f"{specs[exc.name].http_name}: {exc.reason}") from exc

    make.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return make


Compute = Callable[[Request, Callable[[], Any]], Awaitable[Response]]


def _route(api: APIRouter, question: type[Question], compute: Compute, backend: LocalBackend) -> None:
    async def endpoint(request: Request, asked: Any = Depends(http_parameters(question))) -> Response:  # noqa: B008
        return await compute(request, lambda: backend.ask(asked))

    api.add_api_route(
        question.ROUTE,
        endpoint,
        methods=["GET"],
        summary=question.SUMMARY,
        response_model=RESPONSE_MODELS.get(question),
        name=question.__name__,
    )
