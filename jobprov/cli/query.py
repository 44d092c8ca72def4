"""`jobprov query …`: series, buckets, comparisons, regressions and jobs, as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from jobprov.cli.common import SuggestingGroup, processor_settings_from
from jobprov.cli.options import make, options
from jobprov.errors import ConfigError, JobprovError, QueryError
from jobprov.query import params as p
from jobprov.query.store import to_plain

if TYPE_CHECKING:
    from jobprov.query.backend import Backend
    from jobprov.settings import ProcessorSettings, Secret

FORMATS = click.Choice(["table", "json", "csv"])


def _settings(ctx: click.Context) -> ProcessorSettings:
    """Processor settings with --store applied (a bad value exits 2 naming the key)."""
    return processor_settings_from(ctx, sink_url=(ctx.obj or {}).get("store"))


def _store(ctx: click.Context, settings: ProcessorSettings | None = None) -> Any:
    """Open the store named by --store / $JOBPROV_PROCESSOR_SINK_URL (else `jobprov up`'s) in this process."""
    from jobprov.query.store import Store
    from jobprov.sinks.clickhouse.client import connect

    settings = settings or _settings(ctx)
    try:
        client = connect(
            settings.sink_url or _home_store_url(),
            username=settings.clickhouse_username,
            password=settings.clickhouse_password,
        )
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    return Store(client, settings.clickhouse_database)


def _home_store_url() -> str:
    from jobprov.settings import state_home

    store = state_home() / "store"
    if not (store / "metadata").is_dir():  # what the engine leaves in a store it has opened
        raise click.UsageError(
            f"no store at {store}: start `jobprov up`, or name one with --store chdb:///dir or http(s)://host:8123"
        )
    return f"chdb://{store}"


def _backend(ctx: click.Context) -> Backend:
    """The query API if one is named (--api, $JOBPROV_API_URL) or `jobprov up` runs for this state home and no
    other store is named; otherwise the store itself, opened here."""
    from jobprov.embedded.service import running_service
    from jobprov.query.backend import HttpBackend, LocalBackend

    api = (ctx.obj or {}).get("api")
    if api:
        try:
            return HttpBackend(api, token=_api_token())
        except ConfigError as exc:
            raise click.UsageError(f"configuration error: {exc}") from exc
    settings = _settings(ctx)
    service = running_service()
    if service is not None and settings.sink_url in (None, service.store_url):
        return HttpBackend(service.api_url, token=_api_token())
    return LocalBackend(_store(ctx, settings), registry(settings))


def registry(settings: ProcessorSettings) -> Any:
    """The comparability registry the settings name (its metric policies judge regressions), else None."""
    if not settings.comparability_registry:
        return None
    from jobprov.stream_processors.comparability import load_registry

    try:
        return load_registry(settings.comparability_registry)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from exc


def _api_token() -> Secret | None:
    """The token to present to the API ($JOBPROV_API_TOKEN), if any."""
    import os

    from jobprov.settings import Secret

    value = os.environ.get("JOBPROV_API_TOKEN")
    return Secret(value) if value else None


_plain = to_plain


def _emit(rows: Sequence[dict[str, Any]], fmt: str, document: Any = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(_plain(document if document is not None else rows), indent=2))
        return
    if not rows:
        click.echo("(no rows)" if fmt == "table" else "")
        return
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows(cells)
        click.echo(buffer.getvalue(), nl=False)
        return
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, dict):  # a label: keys declared empty (no config hash) separate buckets, say nothing
        return ",".join(f"{k}={v}" for k, v in plain.items() if v not in ("", None))
    if isinstance(plain, float):
        return f"{plain:.6g}"
    return "" if plain is None else str(plain)


def _run(fn: Any) -> Any:
    try:
        return fn()
    except QueryError as exc:
        raise click.BadParameter(str(exc)) from exc
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc


def _changes(changes: Sequence[dict[str, Any]]) -> str:
    from jobprov.query.series import describe_changes

    return describe_changes(changes) or "(no provenance change)"


@click.group(cls=SuggestingGroup)
@click.option("--store", help="chdb:///dir or http(s)://host:8123 ($JOBPROV_PROCESSOR_SINK_URL).")
@click.option("--api", envvar="JOBPROV_API_URL", help="Ask this query API (http(s)://host:port) instead of a store.")
@click.pass_context
def query(ctx: click.Context, store: str | None, api: str | None) -> None:
    """Ask the tables: series, buckets, comparisons, regressions, jobs.

    With no --store or --api, a running `jobprov up` is asked through its API, else its store is opened here."""
    ctx.obj = {"store": store, "api": api}


FORMAT = click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
TABLE_OR_JSON = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _ask(ctx: click.Context, question: type[p.Question], given: dict[str, Any]) -> Any:
    """The answer to ``question`` made from a command's arguments (a bad one is a usage error on its option)."""
    asked = make(question, given)
    return _run(lambda: _backend(ctx).ask(asked))


@query.command()
@options(p.Series)
@FORMAT
@click.pass_context
def series(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """METRIC over time, one line per provenance bucket (or per --group-by keys)."""
    from jobprov.query.lines import iso_millis

    lines = _ask(ctx, p.Series, given)
    if fmt == "json":  # the documents as they are: the points as columns
        _emit([], fmt, lines)
        return
    rows = [
        {"label": line["label"], "bucket": line["bucket"] or "", "time": iso_millis(ms), "value": value,
         "unit": line["unit"], "job_id": job}
        for line in lines
        for ms, value, job in zip(line["times_ms"], line["values"], line["job_ids"], strict=True)
    ]  # fmt: skip
    _emit(rows, fmt, lines)


@query.command()
@options(p.Bucket)
@FORMAT
@click.pass_context
def bucket(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """The bucket METRIC with this provenance belongs to, and its baseline statistics: the median (level) and MAD
    (spread) of its last points, as of now or (--as-of) of a job or a time."""
    found = _ask(ctx, p.Bucket, given)
    stats = {k: v for k, v in found["baseline"].items() if k not in ("bucket", "metric")}
    _emit([{"bucket": found["bucket"], "keys": found["keys"], **stats}], fmt, found)


@query.command()
@options(p.Compare)
@FORMAT
@click.pass_context
def compare(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """Provenance keys whose values differ between JOB_A and JOB_B.

    Packages whose version changed are always shown; packages installed in one job only are counted in one
    row unless --all."""
    from jobprov.cli.views import compare_rows

    changes = _ask(ctx, p.Compare, given)
    show_all = given["include_env"] or fmt != "table"
    _emit(compare_rows(changes, given["job_a"], given["job_b"], show_all=show_all), fmt, changes)


@query.command()
@options(p.Regressions)
@FORMAT
@click.pass_context
def regressions(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """Where METRIC's level changed in each bucket: its size, regression or improvement (the metric's policy),
    the last good and first bad job and what changed between them."""
    found = _ask(ctx, p.Regressions, given)
    # A table is read by a person: four significant digits; CSV keeps every digit.
    number = (lambda v: f"{v:.4g}") if fmt == "table" else (lambda v: v)
    rows = [
        {"label": r["label"], "time": r["point"]["time"], "value": number(r["point"]["value"]),
         "baseline": number(r["median"]), "deviation": round(r["deviation"], 1), "job_id": r["point"]["job_id"],
         "what_changed": _changes(r["changes"]), "direction": r["direction"], "size": number(r["size"]),
         "confidence": "" if r["confidence"] is None else number(r["confidence"]),
         "last_good_job": r["last_good_job"]}
        for r in found
    ]  # fmt: skip
    _emit(rows, fmt, found)


@query.command()
@options(p.FindJobs)
@click.option("--artifacts", is_flag=True, help="Find artifacts, each with its producers, consumers, annotations.")
@FORMAT
@click.pass_context
def find(ctx: click.Context, /, artifacts: bool, fmt: str, **given: Any) -> None:
    """Jobs (or --artifacts) matching every --where group: --where "job.name = softmean" --where "time.dow >= 6"."""
    from jobprov.cli.views import found_artifact_rows

    found = _ask(ctx, p.FindArtifacts if artifacts else p.FindJobs, given)
    _emit(found_artifact_rows(found) if artifacts else [{"job_id": f} for f in found], fmt, found)


@query.command()
@options(p.Artifact)
@TABLE_OR_JSON
@click.pass_context
def artifact(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """URI: the jobs that produced and used it, its revisions (checksums over time), its annotations."""
    from jobprov.cli.views import artifact_rows

    found = _ask(ctx, p.Artifact, given)
    _emit(artifact_rows(found) if fmt == "table" else [], fmt, found)


@query.command()
@options(p.GroupJobs)
@FORMAT
@click.pass_context
def groups(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """Jobs grouped by KEY... (param.band, ctx.software.numpy, sys.host, job.kind, …), with counts per status."""
    found = _ask(ctx, p.GroupJobs, given)
    statuses = sorted({s for g in found for s in g["statuses"]})
    rows = [{**g["group"], "total": g["total"], **{s: g["statuses"].get(s, 0) for s in statuses}} for g in found]
    _emit(rows, fmt, found)


@query.command()
@options(p.Lineage)
@FORMAT
@click.pass_context
def lineage(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """Ancestors (or --down: descendants) of REF: a job id, an artifact URI, or job:/artifact: node, through the
    artifacts jobs used and produced (--containment: parent jobs and workflows too)."""
    steps = _ask(ctx, p.Lineage, given)
    _emit(steps, fmt, steps)


@query.command("outputs")
@options(p.Outputs)
@FORMAT
@click.pass_context
def outputs(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """Artifacts produced by the jobs matching --where that have, upstream in the data flow, a job matching
    --ancestor: --where "job.name = softmean" --ancestor "job.name = align_warp" --ancestor "param.model = 12"."""
    found = _ask(ctx, p.Outputs, given)
    _emit([{"job_id": job, "uri": uri} for job, uris in sorted(found.items()) for uri in uris], fmt, found)


@query.command()
@options(p.Job)
@click.option("--all", "show_all", is_flag=True, help="Every field, package and environment variable.")
@TABLE_OR_JSON
@click.pass_context
def job(ctx: click.Context, /, show_all: bool, fmt: str, **given: Any) -> None:
    """JOB_ID: state, provenance, steps, annotations, lineage, then a table of its attempts.

    The table groups installed packages and environment variables into a row each (--all lists them);
    --format json is the whole document."""
    from jobprov.cli.views import attempt_rows, job_rows

    detail = _ask(ctx, p.Job, given)
    if fmt == "json":
        _emit([], "json", detail)
    else:
        _emit(job_rows(detail, show_all=show_all), "table")
        attempts = attempt_rows(detail)
        if attempts:
            click.echo("")
            _emit(attempts, "table")


@query.command()
@options(p.Run)
@FORMAT
@click.pass_context
def run(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """RUN_ID's members (jobs whose parent or workflow it is): program, parameters, status, inputs, outputs."""
    from jobprov.cli.views import member_rows

    found = _ask(ctx, p.Run, given)
    _emit(member_rows(found["members"]), fmt, found)


@query.command()
@options(p.RunsTable)
@FORMAT
@click.pass_context
def runs(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """RUN... side by side: status, members, and the chosen parameters and annotations of each."""
    found = _ask(ctx, p.RunsTable, given)
    _emit(found, fmt, found)


@query.command("compare-runs")
@options(p.CompareRuns)
@FORMAT
@click.pass_context
def compare_runs(ctx: click.Context, /, fmt: str, **given: Any) -> None:
    """How RUN_A and RUN_B differ, member by member: programs, parameters, status, inputs and outputs (URI and
    checksum) and structure, never job ids."""
    found = _ask(ctx, p.CompareRuns, given)
    run_a, run_b = given["run_a"], given["run_b"]
    _emit([{"aspect": r["aspect"], "member": r["member"], "item": r["item"], run_a: r["a"], run_b: r["b"]}
           for r in found], fmt, found)  # fmt: skip


@query.command()
@FORMAT
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Jobs by status."""
    counts = _ask(ctx, p.Status, {})
    _emit([{"status": s, "jobs": n} for s, n in sorted(counts.items())], fmt, counts)


@query.command()
@FORMAT
@click.pass_context
def metrics(ctx: click.Context, fmt: str) -> None:
    """Every metric with points: unit, points, buckets, newest point."""
    found = _ask(ctx, p.Metrics, {})
    _emit(found, fmt, found)


@query.command()
@click.argument("metric")
@click.option("--png", type=click.Path(dir_okay=False), help="Write the plot here as a PNG.")
@click.option("--html", type=click.Path(dir_okay=False), help="Write a standalone HTML page here.")
@options(p.Series, only=("group_by",))
@options(p.Regressions, only=("window", "k", "min_points"))
@click.pass_context
def plot(ctx: click.Context, /, metric: str, png: str | None, html: str | None, **given: Any) -> None:
    """METRIC per provenance bucket with its regressions ringed, as a PNG and/or an HTML page."""
    from pathlib import Path

    from jobprov.query.plots import series_html, series_png

    if not png and not html:
        raise click.UsageError("say where: --png FILE and/or --html FILE")
    asked_series = make(p.Series, {"metric": metric, "group_by": given.pop("group_by")})
    asked_regressions = make(p.Regressions, {"metric": metric, **given, "onset_only": False})
    backend = _backend(ctx)
    lines = _run(lambda: backend.ask(asked_series))
    found = _run(lambda: backend.ask(asked_regressions))
    if png:
        click.echo(f"wrote {_run(lambda: series_png(metric, lines, found, Path(png)))}")
    if html:
        click.echo(f"wrote {_run(lambda: series_html(metric, lines, found, Path(html)))}")
