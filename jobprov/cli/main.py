"""`jobprov`: run jobs with provenance, emit events, manage the spool and the schemas."""

from __future__ import annotations

import importlib
import json

import click

from jobprov import __version__
from jobprov.cli.common import SuggestingGroup, settings_from

# Command name -> module defining it (under the same name). Each is imported only when it runs or when help
# lists it: `jobprov run` wraps jobs and `jobprov emit` is called from inside them, so neither should pay
# (in start-up time and memory) for the query API, the store client or the stream processor.
COMMANDS = {
    "run": "jobprov.cli.run",
    "emit": "jobprov.cli.emit",
    "spool": "jobprov.cli.spool",
    "schemas": "jobprov.cli.schemas",
    "process": "jobprov.cli.process",
    "db": "jobprov.cli.db",
    "query": "jobprov.cli.query",
    "serve": "jobprov.cli.serve",
    "replay": "jobprov.cli.replay",
    "up": "jobprov.cli.up",
    "check": "jobprov.cli.check",
    "import": "jobprov.cli.imports",
    "export": "jobprov.cli.export",
    "alert": "jobprov.cli.alert",
    "alerts": "jobprov.cli.alert",
    "ingest": "jobprov.cli.ingest",
}


class LazyGroup(SuggestingGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return super().get_command(ctx, cmd_name)
        loaded = importlib.import_module(module)
        # A command named for a Python keyword (`import`) is defined as `import_`.
        command = getattr(loaded, cmd_name, None) or getattr(loaded, f"{cmd_name}_")
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{cmd_name} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobprov")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file (default: $JOBPROV_CONFIG).")
@click.option("--url", help="Where events go: kafka://host:port/topic, file:///dir or noop:// ($JOBPROV_URL).")
@click.option("--spool-dir", help="Local spool for undeliverable events ($JOBPROV_SPOOL_DIR).")
def cli(config: str | None, url: str | None, spool_dir: str | None) -> None:
    """Record each job's provenance as it runs, and compare like with like."""


@cli.group(cls=SuggestingGroup)
def config() -> None:
    """Inspect settings."""


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective emitter settings (secrets masked)."""
    click.echo(json.dumps(settings_from(ctx).describe(), indent=2))


def main() -> None:
    cli(prog_name="jobprov")


if __name__ == "__main__":  # pragma: no cover
    main()
