"""The alert routes of the HTTP API that record events (write scope). Listing alerts is a question like any other
(``GET /api/v1/alerts?state=&metric=&alert=&limit=``, :class:`jobprov.query.params.Alerts`).

- ``POST /api/v1/alerts/{alert_id}/triage`` with ``{"state": "ack"|"acknowledged"|"invalid"|"fixed"|"wontfix"|
  "improvement", "note": ..., "author": ...}``: records an ``AlertTriaged`` event; 404 (with close ids) for an
  unknown alert, 400 naming the states for a bad one. The alerts table shows the new state once the worker folded
  the event (a moment later), as for every other event.
- ``POST /api/v1/alerts/scan``: one scan pass now (``jobprov alerts scan``): the new alerts it raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jobprov.query.backend import LocalBackend

Compute = Callable[[Request, Callable[[], Any]], Awaitable[Response]]


class Triage(BaseModel):
    state: str = Field(description="acknowledged (or ack), invalid, fixed, wontfix or improvement")
    note: str | None = Field(default=None, max_length=4000)
    author: str | None = Field(default=None, max_length=200)


def add_alert_routes(write: APIRouter, backend: LocalBackend, compute: Compute) -> None:
    """The routes above, on ``write``: a router prefixed ``/api/v1`` that takes the write scope."""

    @write.post("/alerts/scan", summary="Scan the buckets for new changes now and raise their alerts")
    async def post_scan(request: Request) -> Response:
        return await compute(request, backend.scan_alerts)

    @write.post("/alerts/{alert_id}/triage", summary="Record a person's verdict on an alert")
    async def post_triage(request: Request, alert_id: Annotated[str, Path(max_length=64)], triage: Triage) -> Response:
        return await compute(
            request, lambda: backend.triage(alert_id, triage.state, note=triage.note, author=triage.author)
        )
