"""`jobprov spool status|drain`."""

from __future__ import annotations

import json

import click

from jobprov.cli.common import SuggestingGroup, settings_from
from jobprov.emitters.drain import drain as drain_spool
from jobprov.emitters.factory import make_codec
from jobprov.emitters.kafka import parse_kafka_url
from jobprov.emitters.spool import spool_status


@click.group(cls=SuggestingGroup)
def spool() -> None:
    """The local spool of events that could not be delivered."""


@spool.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Segments and bytes waiting in the spool."""
    settings = settings_from(ctx)
    click.echo(json.dumps({"spool_dir": settings.spool_dir, **spool_status(settings.spool_dir)}))


@spool.command()
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Give up after this many seconds.")
@click.pass_context
def drain(ctx: click.Context, timeout: float) -> None:
    """Send the spool to Kafka; remove only what the broker acknowledged. Exit 1 if anything is left.

    A damaged segment gives up every readable event and is moved to the spool's quarantine/ folder with a
    note; that too exits 1, with a warning."""
    settings = settings_from(ctx)
    if not settings.url.startswith("kafka:"):
        raise click.UsageError(f"drain needs a kafka:// URL, not {settings.url!r} (set --url or JOBPROV_URL)")
    bootstrap, topic = parse_kafka_url(settings.url)
    report = drain_spool(
        settings.spool_dir,
        bootstrap=bootstrap,
        topic=topic,
        codec=make_codec(settings),
        security=settings.kafka_config(),
        timeout=timeout,
    )
    click.echo(
        json.dumps(
            {
                "segments": report.segments,
                "sent": report.sent,
                "kept": report.kept,
                "quarantined": report.quarantined,
                "errors": report.errors,
            }
        )
    )
    for line in report.quarantined:
        click.echo(f"jobprov: warning: damaged spool segment quarantined: {line}", err=True)
    if report.kept or report.errors or report.quarantined:
        ctx.exit(1)
