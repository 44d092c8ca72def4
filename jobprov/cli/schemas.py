"""`jobprov schemas check|show`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from jobprov.cli.common import SuggestingGroup
from jobprov.errors import SchemaCompatibilityError
from jobprov.schemas import registry
from jobprov.schemas.compat import check_dirs


@click.group(cls=SuggestingGroup)
def schemas() -> None:
    """The event schemas and their evolution."""


@schemas.command()
@click.argument("old_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--samples", type=int, default=200, show_default=True, help="Generated records per direction.")
def check(old_dir: Path, new_dir: Path, samples: int) -> None:
    """Check that the schemas in NEW_DIR are a legal evolution of those in OLD_DIR. Exit 1 if not."""
    try:
        problems = check_dirs(old_dir, new_dir, samples)
    except SchemaCompatibilityError as exc:
        raise click.ClickException(str(exc)) from exc
    if problems:
        for problem in problems:
            click.echo(f"incompatible: {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"compatible: {new_dir} can read data written with {old_dir}, and old readers can read new data")


@schemas.command()
def show() -> None:
    """Print the current envelope schema's fingerprint and location."""
    current = registry.current()
    click.echo(
        json.dumps(
            {
                "directory": str(registry.schema_dir()),
                "fingerprint_crc64_avro": current.fingerprint.hex(),
                "released": sorted(v.name for v in registry.known_versions().values()),
            }
        )
    )
