"""The read-only HTTP API over the query layer (FastAPI; the OpenAPI document is at ``/openapi.json``), and the
web page that reads it (``/``: a metric's series per bucket with regressions; ``/jobs/{id}``: one job).

Every endpoint is a thin shell over :class:`jobprov.query.backend.LocalBackend`, whose documents the CLI also
reads back through :class:`~jobprov.query.backend.HttpBackend`: parameters are validated by FastAPI and by the
query functions (a bad parameter is a 4xx with the reason), values reach ClickHouse only as query parameters.
The process that serves the API owns the store; run it with ``jobprov serve`` or ``jobprov up``.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from jobprov import __version__
from jobprov.errors import QueryError, UnknownNameError
from jobprov.query.backend import LocalBackend
from jobprov.query.store import Store
from jobprov.settings import EmitterSettings
from jobprov.stream_processors.comparability import ComparabilityRegistry


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
    values: list[float]
    job_ids: list[str]
    event_ids: list[str]


def web_asset(name: str) -> str:
    """A file of the web page (HTML, JS, CSS), shipped inside the package."""
    return (resources.files("jobprov.query") / "web" / name).read_text(encoding="utf-8")


def create_app(
    store: Store, registry: ComparabilityRegistry | None = None, ingest: EmitterSettings | None = None
) -> FastAPI:
    """The API over ``store``; with ``ingest`` (where events go), also ``POST /api/v1/lineage`` (OpenLineage)."""
    app = FastAPI(
        title="jobprov",
        version=__version__,
        description="Job provenance: regression series per provenance bucket, comparisons, regressions, jobs.",
    )
    backend = LocalBackend(store, registry)
    if ingest is not None:
        from jobprov.query.lineage_ingest import lineage_router

        app.include_router(lineage_router(ingest))

    @app.exception_handler(QueryError)
    async def bad_query(request: Any, exc: QueryError) -> JSONResponse:
        # A name the store does not know (a metric, an attribute key) is not found; any other bad parameter
        # is a bad request.
        status = 404 if isinstance(exc, UnknownNameError) else 400
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    @app.get("/healthz", summary="Liveness: the process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the store answers")
    def readyz() -> dict[str, Any]:
        store.rows("SELECT 1")
        return {"status": "ready", "database": store.database}

    @app.get("/api/v1/metrics", summary="Every metric with points: unit, points, buckets, newest point")
    def get_metrics() -> Any:
        return backend.metrics()

    # The model documents the lines; the response is written straight from the column lists (a long series is
    # tens of thousands of numbers: validating or re-encoding them element by element would cost more than the
    # query).
    @app.get(
        "/api/v1/series/{metric}",
        summary="A metric over time, one line per bucket or chosen keys",
        response_model=list[SeriesLine],
    )
    def get_series(
        metric: str,
        group_by: Annotated[list[str] | None, Query(description="Provenance keys to group by")] = None,
        filter: Annotated[list[str] | None, Query(description="KEY=VALUE provenance filters")] = None,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: Annotated[str | None, Query(description="Only this bucket (an id, as /api/v1/buckets says)")] = None,
    ) -> Response:
        return JSONResponse(
            backend.series(
                metric,
                group_by=group_by or (),
                since=since,
                until=until,
                filters=_pairs(filter, "filter"),
                exclude_annotated=_pairs(exclude_annotated, "exclude_annotated"),
                bucket=bucket,
            )
        )

    @app.get("/api/v1/buckets/{metric}", summary="Which bucket this provenance belongs to, and its baseline")
    def get_bucket(
        metric: str,
        provenance: Annotated[list[str] | None, Query(description="KEY=VALUE")] = None,
        last: Annotated[int, Query(ge=1, le=100_000)] = 50,
    ) -> Any:
        return backend.bucket(metric, _pairs(provenance, "provenance"), last)

    @app.get("/api/v1/compare", summary="Provenance keys that differ between two jobs")
    def get_compare(a: str, b: str, include_env: bool = False) -> Any:
        return backend.compare(a, b, include_env)

    @app.get("/api/v1/regressions/{metric}", summary="Changes of level per bucket: regressions and improvements")
    def get_regressions(
        metric: str,
        method: Annotated[
            str | None,
            Query(pattern="^(changepoint|rolling_median)$", description="Default: the metric's policy (changepoint)"),
        ] = None,
        window: Annotated[int, Query(ge=2, le=1000)] = 10,
        k: Annotated[float, Query(gt=0)] = 4.0,
        min_points: Annotated[int, Query(ge=2, le=10_000, description="Points of a bucket before any is judged")] = 10,
        onset_only: bool = True,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
    ) -> Any:
        return backend.regressions(
            metric,
            window=window,
            k=k,
            min_points=min_points,
            onset_only=onset_only,
            exclude_annotated=_pairs(exclude_annotated, "exclude_annotated"),
            method=method,
        )

    @app.get("/api/v1/check", summary="A job's points against their buckets' current level (CI gating)")
    def get_check(
        job: Annotated[str | None, Query(description="A job id")] = None,
        metric: Annotated[str | None, Query(description="Only this metric (required with bucket)")] = None,
        bucket: Annotated[str | None, Query(description="Judge the newest job of this bucket")] = None,
    ) -> Any:
        return backend.check(job, metric=metric, bucket=bucket)

    @app.get("/api/v1/lineage", summary="Ancestors or descendants of a job or an artifact")
    def get_lineage(
        ref: str,
        direction: Annotated[str, Query(pattern="^(up|down)$")] = "up",
        depth: Annotated[int, Query(ge=1, le=50)] = 10,
        stop_at: Annotated[list[str] | None, Query(description="KEY=VALUE: do not go past such jobs")] = None,
    ) -> Any:
        return backend.lineage(ref, down=direction == "down", depth=depth, stop_at=_pairs(stop_at, "stop_at"))

    @app.get("/api/v1/jobs", summary="Jobs matching every where-group (ATTR OP VALUE | …)")
    def get_jobs(
        where: Annotated[list[str], Query(description='e.g. "job.name = softmean", "band = r | band = i"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[str]:
        return backend.find(where, limit=limit)

    @app.get("/api/v1/artifacts", summary="Artifacts matching every where-group")
    def get_artifacts(
        where: Annotated[list[str], Query(description='e.g. "relation = produced", "uri ~ s3://bucket/"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[str]:
        return backend.find(where, artifacts=True, limit=limit)

    @app.get("/api/v1/jobs/{job_id}", summary="Everything about one job")
    def get_job(job_id: str) -> Any:
        try:
            return backend.job(job_id)
        except QueryError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    @app.get("/api/v1/jobs/{job_id}/resources", summary="A job's resource samples in time order")
    def get_resources(job_id: str) -> Any:
        return backend.resources(job_id)

    @app.get("/api/v1/status", summary="Jobs by status")
    def get_status() -> dict[str, int]:
        return backend.status()

    # The web page: static files that read the API above (no build step, no third-party scripts).
    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(web_asset("index.html"))

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(job_id: str) -> HTMLResponse:
        return HTMLResponse(web_asset("job.html"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        types = {"js": "text/javascript", "css": "text/css"}
        kind = name.rsplit(".", 1)[-1]
        if kind not in types or "/" in name or name.startswith("."):
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        try:
            return Response(web_asset(name), media_type=types[kind])
        except FileNotFoundError as exc:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}") from exc

    return app
