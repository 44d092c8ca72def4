"""`jobprov export ...`: jobs, runs and artifacts in other tools' formats (OpenLineage RunEvents, W3C PROV,
RO-Crate)."""

from __future__ import annotations

import json
from typing import Any

import click

from jobprov.cli.common import SuggestingGroup
from jobprov.errors import QueryError

store_option = click.option("--store", help="chdb:///dir or http(s)://host:8123 (default: `jobprov up`'s).")
api_option = click.option("--api", envvar="JOBPROV_API_URL", help="Read through this query API ($JOBPROV_API_URL).")
output_option = click.option("-o", "--output", type=click.File("w"), default="-", help="Write here (default: stdout).")


def _job(ctx: click.Context, job_id: str) -> dict[str, Any]:
    from jobprov.cli.query import _backend

    try:
        return _backend(ctx).job(job_id)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc


def _run_parts(ctx: click.Context, ref: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The job ``ref`` (None for a workflow id with no job of its own) and its member jobs in start order."""
    from jobprov.cli.query import _backend

    backend = _backend(ctx)
    own: dict[str, Any] | None = None
    try:
        own = backend.job(ref)
    except QueryError as exc:
        missing = exc
    try:
        members = [m["job_id"] for m in backend.run(ref)["members"]]
    except QueryError:
        members = []
    if own is None and not members:
        raise click.ClickException(str(missing))
    return own, [_job(ctx, member) for member in members]


def _with_members(ctx: click.Context, ref: str) -> list[dict[str, Any]]:
    """The job ``ref`` and, when it is a run (or a workflow id), its member jobs in start order."""
    own, members = _run_parts(ctx, ref)
    return ([own] if own else []) + members


@click.group(cls=SuggestingGroup)
def export() -> None:
    """Export jobs and artifacts in other tools' formats."""


@export.command()
@click.argument("job_id", metavar="JOB|RUN")
@output_option
@store_option
@api_option
@click.pass_context
def openlineage(ctx: click.Context, job_id: str, output: Any, store: str | None, api: str | None) -> None:
    """JOB as OpenLineage RunEvents, one JSON object per line (the OpenLineage file transport's form); a RUN
    (a job with members, or a workflow id) with its members' events, each naming the run as its parent."""
    from jobprov.query.exporters.openlineage import runs_events

    ctx.obj = {"store": store, "api": api}
    for event in runs_events(_with_members(ctx, job_id)):
        output.write(json.dumps(event, sort_keys=True) + "\n")


@export.command()
@click.argument("ref", metavar="JOB|RUN|ARTIFACT")
@click.option("--format", "fmt", type=click.Choice(["json", "provn", "ttl"]), default="json", show_default=True)
@output_option
@store_option
@api_option
@click.pass_context
def prov(ctx: click.Context, ref: str, fmt: str, output: Any, store: str | None, api: str | None) -> None:
    """A job (a run with its members), or an artifact with the jobs that produced and used it, as W3C PROV
    (PROV-JSON, PROV-N, Turtle).

    REF is a job or run id, or an artifact URI (anything with '://', or prefixed 'artifact:')."""
    from jobprov.cli.query import _backend
    from jobprov.query.exporters.prov import document, serialize
    from jobprov.query.lineage import node_of

    ctx.obj = {"store": store, "api": api}
    node = node_of(ref)
    if node.startswith("job:"):
        jobs = _with_members(ctx, node[len("job:") :])
    else:
        backend = _backend(ctx)
        try:
            steps = [*backend.lineage(node, depth=1), *backend.lineage(node, direction="down", depth=1)]
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc
        job_ids = sorted({s["node"][len("job:") :] for s in steps if s["node"].startswith("job:")})
        if not job_ids:
            raise click.ClickException(f"no job produced or used {node[len('artifact:') :]!r}")
        jobs = [_job(ctx, j) for j in job_ids]
    output.write(serialize(document(jobs), fmt))
    output.write("\n")


@export.command()
@click.argument("run_id", metavar="RUN")
@click.option("-o", "--output", "directory", required=True, type=click.Path(file_okay=False), help="Crate directory.")
@store_option
@api_option
@click.pass_context
def rocrate(ctx: click.Context, run_id: str, directory: str, store: str | None, api: str | None) -> None:
    """A RUN with its members, inputs and outputs as an RO-Crate (Process Run Crate profile) in a directory."""
    from jobprov.query.exporters.rocrate import crate

    ctx.obj = {"store": store, "api": api}
    own, members = _run_parts(ctx, run_id)
    crate(run_id, own, members).write(directory)
    click.echo(f"wrote {directory}/ro-crate-metadata.json ({len(members)} members)", err=True)
