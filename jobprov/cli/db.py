"""`jobprov db migrate|tables`: the ClickHouse schema."""

from __future__ import annotations

import json

import click

from jobprov.cli.common import SuggestingGroup, processor_settings_from
from jobprov.errors import JobprovError


@click.group(cls=SuggestingGroup)
def db() -> None:
    """The ClickHouse tables."""


@db.command()
@click.option("--url", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--database", help="Database name (default jobprov).")
@click.option("--cluster", help="Production: ON CLUSTER name, Replicated engines.")
@click.pass_context
def migrate(ctx: click.Context, url: str | None, database: str | None, cluster: str | None) -> None:
    """Create or upgrade the tables; safe to run again."""
    from jobprov.sinks.clickhouse.client import connect
    from jobprov.sinks.clickhouse.ddl import Target
    from jobprov.sinks.clickhouse.migrate import migrate as apply

    settings = processor_settings_from(
        ctx, need_store=True, sink_url=url, clickhouse_database=database, clickhouse_cluster=cluster
    )
    assert settings.sink_url is not None
    try:
        client = connect(
            settings.sink_url, username=settings.clickhouse_username, password=settings.clickhouse_password
        )
        applied = apply(client, Target(settings.clickhouse_database, settings.clickhouse_cluster))
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"database": settings.clickhouse_database, "applied": applied}))
