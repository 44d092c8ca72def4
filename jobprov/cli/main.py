"""`jobprov`: run jobs with provenance, emit events, manage the spool and the schemas."""

from __future__ import annotations

import json

import click

from jobprov import __version__
from jobprov.cli.common import settings_from
from jobprov.cli.db import db
from jobprov.cli.emit import emit
from jobprov.cli.process import process
from jobprov.cli.query import query
from jobprov.cli.replay import replay
from jobprov.cli.run import run
from jobprov.cli.schemas import schemas
from jobprov.cli.serve import serve
from jobprov.cli.spool import spool
from jobprov.cli.up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobprov")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (default: $JOBPROV_CONFIG).")
@click.option("--url", help="Where events go: kafka://host:port/topic, file:///dir or noop:// ($JOBPROV_URL).")
@click.option("--spool-dir", help="Local spool for undeliverable events ($JOBPROV_SPOOL_DIR).")
def cli(config: str | None, url: str | None, spool_dir: str | None) -> None:
    """Record each job's provenance as it runs, and compare like with like."""


@cli.group()
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective emitter settings (secrets masked)."""
    click.echo(json.dumps(settings_from(ctx).describe(), indent=2))


cli.add_command(run)
cli.add_command(emit)
cli.add_command(spool)
cli.add_command(schemas)
cli.add_command(process)
cli.add_command(db)
cli.add_command(query)
cli.add_command(serve)
cli.add_command(replay)
cli.add_command(up)


def main() -> None:
    cli(prog_name="jobprov")


if __name__ == "__main__":  # pragma: no cover
    main()
