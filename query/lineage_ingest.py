"""``POST /api/v1/lineage``: the OpenLineage HTTP transport's endpoint, so orchestrators record runs in jobprov.

Point an OpenLineage client at the API (``OPENLINEAGE_URL=http://host:8000``, or ``HttpConfig(url=...)``): each
RunEvent it posts becomes jobprov events (``emitters/importers/openlineage.py``) sent to the event topic through
the emitter's transport, the same path and fold as every other event. Answers: 201 once the events were handed
to the broker (or, when it is down, to the spool), 400 naming the bad fields (nothing is sent), 200 for a
DatasetEvent or JobEvent (no run: nothing to record). A client's retry of the same event changes nothing (event
ids derive from the run id, type and time).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from jobprov.emitters.importers.openlineage import IMPORTER, read_run_event
from jobprov.emitters.importers.send import BadInputError, send
from jobprov.settings import EmitterSettings


def lineage_router(settings: EmitterSettings) -> APIRouter:
    """The ingest route, sending where ``settings`` say (its ``url``: ``kafka://host:port/topic``)."""
    router = APIRouter()

    @router.post("/api/v1/lineage", summary="Record an OpenLineage RunEvent (the OpenLineage HTTP transport)")
    async def post_lineage(event: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI's idiom
        try:
            records = read_run_event(event, "POST /api/v1/lineage")
        except BadInputError as exc:
            raise HTTPException(status_code=400, detail=exc.problems) from exc
        if not records:
            return JSONResponse(status_code=200, content={"recorded": 0})
        try:
            report = await run_in_threadpool(send, records, settings, IMPORTER, "POST /api/v1/lineage")
        except BadInputError as exc:
            raise HTTPException(status_code=400, detail=exc.problems) from exc
        if report.lost:
            raise HTTPException(status_code=503, detail=f"{report.lost} events lost: {'; '.join(report.errors[:3])}")
        return JSONResponse(status_code=201, content={"recorded": len(records), "job_id": records[0].job_id})

    return router
