"""`jobprov serve`: the HTTP query API."""

from __future__ import annotations

import click

from jobprov.cli.common import api_options, api_settings_from
from jobprov.cli.query import _settings, _store, registry
from jobprov.errors import ConfigError


@click.command()
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Beyond loopback only with tokens configured.")
@click.option("--port", type=int, default=8000, show_default=True)
@api_options
@click.option(
    "--accept-lineage",
    is_flag=True,
    help="Also take OpenLineage RunEvents (POST /api/v1/lineage, write scope) to --url.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    store: str | None,
    host: str,
    port: int,
    tokens_file: str | None,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    accept_lineage: bool,
) -> None:
    """Serve the query API (OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from jobprov.cli.common import settings_from
    from jobprov.query.api import create_app
    from jobprov.query.tokens import Tokens, check_bind

    api_settings = api_settings_from(ctx, tokens_file, allowed_hosts, cors_origins)
    try:
        check_bind(host, Tokens.load(api_settings.tokens_file, api_settings.tokens))
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from exc
    ingest = settings_from(ctx) if accept_lineage else None
    ctx.obj = {"store": store}
    settings = _settings(ctx)
    # Alert triage and scans (write scope) send their events where `jobprov emit` sends (--url, $JOBPROV_URL).
    app = create_app(_store(ctx, settings), registry(settings), api_settings, ingest, events=settings_from(ctx))
    uvicorn.run(app, host=host, port=port, log_level="warning")
