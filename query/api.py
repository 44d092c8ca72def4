"""The read-only HTTP API over the query layer (FastAPI; the OpenAPI document is at ``/openapi.json``).

Every endpoint is a thin shell over ``jobprov.query``: parameters are validated by FastAPI and by the query
functions (a bad parameter is a 4xx with the reason), values reach ClickHouse only as query parameters.
The process that serves the API owns the store; run it with ``jobprov serve``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

from jobprov import __version__
from jobprov.errors import QueryError
from jobprov.query import attributes, lineage
from jobprov.query import series as q
from jobprov.query.jobs import job_detail, status_counts
from jobprov.query.store import Store, to_plain


def _pairs(raw: list[str] | None, name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HTTPException(status_code=422, detail=f"{name}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


_plain = to_plain


def create_app(store: Store) -> FastAPI:
    app = FastAPI(
        title="jobprov",
        version=__version__,
        description="Job provenance: regression series per provenance bucket, comparisons, regressions, jobs.",
    )

    @app.exception_handler(QueryError)
    async def bad_query(request: Any, exc: QueryError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.get("/healthz", summary="Liveness: the process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the store answers")
    def readyz() -> dict[str, Any]:
        store.rows("SELECT 1")
        return {"status": "ready", "database": store.database}

    @app.get("/api/v1/series/{metric}", summary="A metric over time, one line per bucket or chosen keys")
    def get_series(
        metric: str,
        group_by: Annotated[list[str] | None, Query(description="Provenance keys to group by")] = None,
        filter: Annotated[list[str] | None, Query(description="KEY=VALUE provenance filters")] = None,
        exclude_annotated: Annotated[list[str] | None, Query(description="KEY=VALUE annotations to drop")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        lines = q.series(
            store,
            metric,
            group_by=group_by or None,
            since=since,
            until=until,
            filters=_pairs(filter, "filter"),
            exclude_annotated=_pairs(exclude_annotated, "exclude_annotated"),
        )
        return _plain(lines)

    @app.get("/api/v1/buckets/{metric}", summary="Which bucket this provenance belongs to, and its baseline")
    def get_bucket(
        metric: str,
        provenance: Annotated[list[str] | None, Query(description="KEY=VALUE")] = None,
        last: Annotated[int, Query(ge=1, le=100_000)] = 50,
    ) -> Any:
        bucket, keys = q.which_bucket(metric, _pairs(provenance, "provenance"))
        return {"bucket": bucket, "keys": keys, "baseline": _plain(q.baseline(store, metric, bucket, last))}

    @app.get("/api/v1/compare", summary="Provenance keys that differ between two jobs")
    def get_compare(a: str, b: str, include_env: bool = False) -> Any:
        return _plain(q.compare_jobs(store, a, b, ignore=() if include_env else ("env.",)))

    @app.get("/api/v1/regressions/{metric}", summary="Points outside their bucket's robust baseline")
    def get_regressions(
        metric: str,
        window: Annotated[int, Query(ge=2, le=1000)] = 10,
        k: Annotated[float, Query(gt=0)] = 4.0,
        onset_only: bool = True,
    ) -> Any:
        found = q.regressions(store, metric, window=window, k=k)
        return _plain([r for r in found if r.onset or not onset_only])

    @app.get("/api/v1/lineage", summary="Ancestors or descendants of a job or an artifact")
    def get_lineage(
        ref: str,
        direction: Annotated[str, Query(pattern="^(up|down)$")] = "up",
        depth: Annotated[int, Query(ge=1, le=50)] = 10,
        stop_at: Annotated[list[str] | None, Query(description="KEY=VALUE: do not go past such jobs")] = None,
    ) -> Any:
        walk = lineage.descendants if direction == "down" else lineage.ancestors
        return _plain(walk(store, ref, depth=depth, stop_at=_pairs(stop_at, "stop_at")))

    @app.get("/api/v1/jobs", summary="Jobs matching every where-group (ATTR OP VALUE | …)")
    def get_jobs(
        where: Annotated[list[str], Query(description='e.g. "job.name = softmean", "band = r | band = i"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[str]:
        return attributes.find_jobs(store, where, limit)

    @app.get("/api/v1/artifacts", summary="Artifacts matching every where-group")
    def get_artifacts(
        where: Annotated[list[str], Query(description='e.g. "relation = produced", "uri ~ s3://bucket/"')],
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> list[str]:
        return attributes.find_artifacts(store, where, limit)

    @app.get("/api/v1/jobs/{job_id}", summary="Everything about one job")
    def get_job(job_id: str) -> Any:
        try:
            return _plain(job_detail(store, job_id))
        except QueryError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc

    @app.get("/api/v1/status", summary="Jobs by status")
    def get_status() -> dict[str, int]:
        return status_counts(store)

    return app
