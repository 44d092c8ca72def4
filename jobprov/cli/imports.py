"""`jobprov import ...`: other tools' records (JUnit XML, pytest-benchmark JSON, Slurm's sacct) as jobs.

Each command reads the whole file, checks every record and sends nothing if any is bad (the error names each
bad line or element). Event ids derive from the records, so importing the same file again changes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from jobprov.cli.common import SuggestingGroup, parse_time, settings_from
from jobprov.emitters.importers.send import BadInputError, Record, send

parent_option = click.option(
    "--parent-job-id",
    envvar="JOBPROV_JOB_ID",
    help="The job these belong to (default: $JOBPROV_JOB_ID, set inside `jobprov run`).",
)
job_id_option = click.option("--job-id", help="The imported job's id (default: derived from the file).")


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.FileError(path, str(exc)) from exc


def _import(ctx: click.Context, path: str, importer: str, read: Callable[[bytes], Sequence[Record]]) -> None:
    try:
        records = read(_read(path))
        report = send(records, settings_from(ctx), importer, path)
    except BadInputError as exc:
        raise click.ClickException(str(exc)) from exc
    jobs = sorted({r.job_id for r in records})
    shown = ", ".join(jobs[:5]) + (f" and {len(jobs) - 5} more" if len(jobs) > 5 else "")
    click.echo(f"imported {len(records)} events of {len(jobs)} jobs ({shown})", err=True)
    if report.lost:
        raise click.ClickException(f"{report.lost} events lost: {'; '.join(report.errors[:3])}")


@click.group("import", cls=SuggestingGroup)
def import_() -> None:
    """Import other tools' records as jobs (importing the same file twice changes nothing)."""


@import_.command()
@click.argument("path", type=click.Path(dir_okay=False))
@job_id_option
@parent_option
@click.option("--start", help="Start of suites without a timestamp (default: the file's mtime less their time).")
@click.pass_context
def junit(ctx: click.Context, path: str, job_id: str | None, parent_job_id: str | None, start: str | None) -> None:
    """JUnit XML: a job per test suite, a step per test case."""
    from jobprov.emitters.importers.junit import IMPORTER, read_junit

    begin = parse_time(start)
    written = datetime.fromtimestamp(os.path.getmtime(path), UTC) if os.path.exists(path) else None

    def read(data: bytes) -> Sequence[Record]:
        return read_junit(data, path, job_id=job_id, parent_job_id=parent_job_id, start=begin, written=written)

    _import(ctx, path, IMPORTER, read)


@import_.command("pytest-benchmark")
@click.argument("path", type=click.Path(dir_okay=False))
@job_id_option
@parent_option
@click.option("--name", default="pytest-benchmark", show_default=True, help="The job's name.")
@click.pass_context
def pytest_benchmark(ctx: click.Context, path: str, job_id: str | None, parent_job_id: str | None, name: str) -> None:
    """pytest-benchmark JSON: a job whose metrics are each benchmark's statistics."""
    from jobprov.emitters.importers.pytest_benchmark import IMPORTER, read_pytest_benchmark

    def read(data: bytes) -> Sequence[Record]:
        return read_pytest_benchmark(data, path, job_id=job_id, name=name, parent_job_id=parent_job_id)

    _import(ctx, path, IMPORTER, read)


@import_.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="Zone of the parsable form's times without an offset (sacct prints the host's local time).",
)
@click.pass_context
def slurm(ctx: click.Context, path: str, timezone: str) -> None:
    """Slurm accounting: `sacct --json`, or `sacct --parsable2 --format=...` with its header line (add
    --duplicates for every attempt of requeued jobs). Both go through one mapping.

    PATH '-' reads standard input: `sacct --json --duplicates -S 2026-05-01 | jobprov import slurm -`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from jobprov.emitters.importers.slurm import IMPORTER, read_sacct_json
    from jobprov.emitters.importers.slurm_forms import read_sacct_parsable

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"{timezone!r} is not a time zone name", param_hint="--timezone") from exc

    def read(data: bytes) -> Sequence[Record]:
        if data.lstrip()[:1] == b"{":
            return read_sacct_json(data, path)
        return read_sacct_parsable(data, path, zone)

    _import(ctx, path, IMPORTER, read)
