"""`jobprov serve`: the read-only HTTP query API."""

from __future__ import annotations

import click

from jobprov.cli.query import _settings, _store, registry


@click.command()
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.pass_context
def serve(ctx: click.Context, store: str | None, host: str, port: int) -> None:
    """Serve the query API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from jobprov.query.api import create_app

    ctx.obj = {"store": store}
    settings = _settings(ctx)
    uvicorn.run(create_app(_store(ctx, settings), registry(settings)), host=host, port=port, log_level="warning")
