"""`jobprov serve`: the read-only HTTP query API."""

from __future__ import annotations

import click

from jobprov.cli.query import _settings, _store, registry


@click.command()
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--accept-lineage", is_flag=True, help="Also take OpenLineage RunEvents (POST /api/v1/lineage) to --url.")
@click.pass_context
def serve(ctx: click.Context, store: str | None, host: str, port: int, accept_lineage: bool) -> None:
    """Serve the query API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from jobprov.cli.common import settings_from
    from jobprov.query.api import create_app

    ingest = settings_from(ctx) if accept_lineage else None
    ctx.obj = {"store": store}
    settings = _settings(ctx)
    app = create_app(_store(ctx, settings), registry(settings), ingest)
    uvicorn.run(app, host=host, port=port, log_level="warning")
