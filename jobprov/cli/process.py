"""`jobprov process`: run a stream processor worker."""

from __future__ import annotations

import logging
from typing import Any

import click

from jobprov.cli.common import processor_settings_from
from jobprov.errors import JobprovError


@click.command()
@click.option("--source", "source_url", help="Events topic, kafka://host:port/topic ($JOBPROV_PROCESSOR_SOURCE_URL).")
@click.option("--app-id", help="Consumer group shared by cooperating workers.")
@click.option("--partitions", type=int, help="Partitions of the events topic (created if missing).")
@click.option("--metrics-port", type=int, help="Prometheus port on 127.0.0.1; 0 = off.")
@click.option("--web-port", type=int, hidden=True, expose_value=False, callback=lambda c, p, v: _retired(p, v))
@click.option("--data-dir", hidden=True, expose_value=False, callback=lambda c, p, v: _retired(p, v))
@click.option("--registry", "comparability_registry", help="Comparability registry TOML file.")
@click.option("--sink", "sink_url", help="chdb:///dir or http(s)://host:8123; default: the derived-records topic.")
@click.option("--log-level", default="warning", show_default=True)
@click.pass_context
def process(ctx: click.Context, /, log_level: str, **options: Any) -> None:
    """Fold the events topic into job state and provenance records, continuously."""
    from jobprov.stream_processors.worker import make_sink, run_worker

    settings = processor_settings_from(ctx, **options)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sink = make_sink(settings)
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        run_worker(settings, sink)
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        sink.close()


def _retired(param: click.Parameter, value: object) -> None:
    """Options of the former worker: an error that says what replaces them, not "no such option"."""
    if value is not None:
        from jobprov.settings import RETIRED

        raise click.BadParameter(RETIRED["processor"][str(param.name)], param=param)
