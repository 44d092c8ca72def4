"""`jobprov check`: fail a pipeline when a job's points are a regression against their buckets' level."""

from __future__ import annotations

from typing import Any

import click

from jobprov.cli.options import options
from jobprov.cli.query import FORMAT, _ask, _emit
from jobprov.query.params import Check


@click.command()
@options(Check)
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--api", envvar="JOBPROV_API_URL", help="Ask this query API (http(s)://host:port) instead of a store.")
@FORMAT
@click.pass_context
def check(ctx: click.Context, /, store: str | None, api: str | None, fmt: str, **given: Any) -> None:
    """Each metric point of JOB_ID against its bucket's level before it (since the bucket's last change point).

    Exit status: 0 when no point is a regression, 1 when one is (as the metric's policy in the comparability
    registry says: direction, minimum change, sensitivity), 2 on a usage error. Improvements and points with
    too short a history to judge ("no baseline") do not fail."""
    if (given["job_id"] is None) == (given["bucket"] is None):
        raise click.UsageError("name a JOB_ID or --bucket (with --metric)")
    ctx.obj = {"store": store, "api": api}
    verdicts = _ask(ctx, Check, given)
    number = (lambda v: "" if v is None else f"{v:.4g}") if fmt == "table" else (lambda v: v)
    rows = [
        {"metric": v["metric"], "label": v["label"], "job_id": v["job_id"], "verdict": v["verdict"],
         "value": number(v["values"][0]) if len(v["values"]) == 1 else str(len(v["values"])) + " points",
         "baseline": number(v["baseline"]), "size": number(v["size"]), "confidence": number(v["confidence"]),
         "baseline_points": v["baseline_points"]}
        for v in verdicts
    ]  # fmt: skip
    _emit(rows, fmt, verdicts)
    if any(v["verdict"] == "regression" for v in verdicts):
        ctx.exit(1)
