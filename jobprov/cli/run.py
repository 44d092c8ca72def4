"""`jobprov run -- CMD ARGS`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from jobprov.cli.common import parse_pairs, settings_from
from jobprov.emitters.wrapper import RunSpec
from jobprov.emitters.wrapper import run as run_wrapped

if TYPE_CHECKING:
    from jobprov.emitters.emitter import Emitter

# The event model is loaded once the job has started (see wrapper.py); the choices are spelled out here.
JOB_KINDS = ("ci", "batch", "hpc", "pipeline", "interactive")


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--name", help="Job name (default: the program's name).")
@click.option("--kind", type=click.Choice(JOB_KINDS), help="Job kind (default: detected from the environment).")
@click.option("--job-id", help="Use this job id instead of a new UUID.")
@click.option("-p", "--provenance", "provenance", multiple=True, metavar="KEY=VALUE", help="Provenance (repeatable).")
@click.option("--dataset", multiple=True, metavar="NAME[@VERSION]", help="An input dataset (repeatable).")
@click.option("--parent-job-id", help="The job that spawned this one.")
@click.option("--workflow-id", help="Workflow this job belongs to.")
@click.option("--dag-node", help="Workflow DAG node this job executes.")
@click.option("--interval", type=float, help="Resource sampling interval in seconds.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    name: str | None,
    kind: str | None,
    job_id: str | None,
    provenance: tuple[str, ...],
    dataset: tuple[str, ...],
    parent_job_id: str | None,
    workflow_id: str | None,
    dag_node: str | None,
    interval: float | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND as a job: record its life, resources and exit status; exit with its exit code."""
    settings = settings_from(ctx, sample_interval_s=interval)
    datasets = []
    for item in dataset:
        ds_name, _, version = item.partition("@")
        datasets.append((ds_name, version or None))
    spec = RunSpec(
        argv=list(command),
        name=name,
        kind=kind,
        job_id=job_id,
        provenance=parse_pairs(provenance, "--provenance"),
        datasets=datasets,
        parent_job_id=parent_job_id,
        workflow_id=workflow_id,
        dag_node=dag_node,
    )

    def make_emitter() -> Emitter:
        from jobprov.emitters.emitter import create_emitter

        return create_emitter(settings, name="jobprov-run")

    sys.exit(run_wrapped(spec, settings, make_emitter))
