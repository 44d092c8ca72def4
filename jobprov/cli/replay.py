"""`jobprov replay`: rebuild the derived tables from the log, verify, swap."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from jobprov.cli.common import processor_settings_from
from jobprov.cli.query import _store
from jobprov.errors import JobprovError

if TYPE_CHECKING:
    from jobprov.stream_processors.processor import RawEvent


@click.command()
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option(
    "--from",
    "source",
    default="events-table",
    show_default=True,
    help="events-table, file:///spool-or-archive-dir, or kafka://host:port/topic.",
)
@click.option("--into", "shadow", help="Shadow database (default: <database>_replay).")
@click.option("--registry", type=click.Path(exists=True, dir_okay=False), help="Comparability registry TOML.")
@click.option("--verify", "do_verify", is_flag=True, help="Compare shadow and live, row for row.")
@click.option("--swap", "do_swap", is_flag=True, help="Exchange shadow and live tables after a clean verify.")
@click.option("--force", is_flag=True, help="Swap even if verification found differences.")
@click.option("--idle-timeout", type=float, default=5.0, show_default=True, help="Topic sources end after this.")
@click.pass_context
def replay(
    ctx: click.Context,
    store: str | None,
    source: str,
    shadow: str | None,
    registry: str | None,
    do_verify: bool,
    do_swap: bool,
    force: bool,
    idle_timeout: float,
) -> None:
    """Fold the whole log again with the same fold into a shadow database; optionally verify and swap."""
    from jobprov.emitters.factory import spool_path
    from jobprov.emitters.kafka import parse_kafka_url
    from jobprov.sinks.clickhouse.client import BATCH_ENGINE_ALLOCATOR_OPTIONS, configure_engine_allocator
    from jobprov.stream_processors import replay as r
    from jobprov.stream_processors.comparability import ComparabilityRegistry, load_registry
    from jobprov.stream_processors.fold import FoldContext

    ctx.obj = {"store": store}
    configure_engine_allocator(BATCH_ENGINE_ALLOCATOR_OPTIONS)  # a batch that exits when done: the faster one
    handle = _store(ctx)
    live = handle.database
    target = shadow or f"{live}_replay"
    try:
        total = None
        events: Iterable[RawEvent]
        if source == "events-table":
            events = r.from_events_table(handle.client, live)
            total = r.count_events(handle.client, live)
        elif source.startswith("file:"):
            events = r.from_spool(spool_path(source))
        elif source.startswith("kafka:"):
            # The topic is read with the processor's Kafka security settings (JOBPROV_PROCESSOR_KAFKA_*).
            kafka_config = processor_settings_from(ctx).kafka_config()
            events = r.from_topic(*parse_kafka_url(source), idle_timeout_s=idle_timeout, kafka_config=kafka_config)
        else:
            raise click.BadParameter("events-table, file:///dir or kafka://host:port/topic", param_hint="--from")
        context = FoldContext(registry=load_registry(registry) if registry else ComparabilityRegistry())
        report = r.replay(events, handle.client, target, context, total=total)
        out: dict[str, object] = {"events": report.events, "events_per_s": round(report.rate),
                                  "dead_letters": report.dead_letters, "shadow": target,
                                  "jobs_in_memory_peak": report.jobs_in_memory_peak}  # fmt: skip
        verification = None
        if do_verify or do_swap:
            verification = r.verify(handle.client, live, target)
            out["differences"] = [vars(d) for d in verification.differences]
        if do_swap:
            r.swap(handle.client, live, target, verification, force=force)
            out["swapped"] = True
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(out))
    if verification is not None and not verification.clean and not (do_swap and force):
        ctx.exit(1)
