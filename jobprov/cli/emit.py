"""`jobprov emit ...`: add events to a job from any language (the job comes from $JOBPROV_JOB_ID)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any, BinaryIO

import click

from jobprov.cli.common import SuggestingGroup, parse_pairs, parse_time, settings_from
from jobprov.emitters.emitter import create_emitter, event_time_ms
from jobprov.emitters.job import config_ref
from jobprov.emitters.validate import check_event
from jobprov.errors import InvalidEventError
from jobprov.schemas.models import (
    JOB_KINDS,
    JOB_STATUSES,
    JOB_WAIT_STATUSES,
    PAYLOAD_BY_NAME,
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    Dataset,
    JobFinished,
    JobStatusChanged,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    from_avro,
)

job_id_option = click.option("--job-id", envvar="JOBPROV_JOB_ID", help="Target job (default: $JOBPROV_JOB_ID).")
time_option = click.option("--time", "when", help="Event time for backfill: ISO 8601 with offset, or epoch seconds.")


def _check(payload: Any, when: datetime | None) -> None:
    """The emitter's own checks (emitters/validate.py), made before anything is sent."""
    check_event(payload, None if when is None else event_time_ms(when, 0.0))


def _send(ctx: click.Context, events: Iterable[tuple[str, Any, datetime | None, int]]) -> None:
    """Emit and close within the flush timeout. Delivery problems end in the spool, never in a failed exit;
    an invalid event is a usage error and nothing is sent."""
    events = list(events)
    for _, payload, when, _ in events:
        try:
            _check(payload, when)
        except InvalidEventError as exc:
            raise click.UsageError(f"nothing emitted: {exc}") from exc
    emitter = create_emitter(settings_from(ctx), name="jobprov-cli")
    for job_id, payload, when, attempt in events:
        emitter.emit(job_id, payload, event_time=when, attempt=attempt)
    emitter.close()


def _require(job_id: str | None) -> str:
    if not job_id:
        raise click.UsageError("no job: pass --job-id or run inside `jobprov run` (which sets JOBPROV_JOB_ID)")
    return job_id


def _attempt() -> int:
    raw = os.environ.get("JOBPROV_ATTEMPT", "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


@click.group(cls=SuggestingGroup)
def emit() -> None:
    """Add an event to a job."""


@emit.command()
@click.argument("name")
@click.argument("value", type=float)
@click.option("--unit")
@click.option("--tag", multiple=True, metavar="KEY=VALUE")
@click.option("--key", "keys", multiple=True, help="Comparability key (repeatable); overrides the registry.")
@click.option("--step")
@job_id_option
@time_option
@click.pass_context
def metric(
    ctx: click.Context,
    name: str,
    value: float,
    unit: str | None,
    tag: tuple[str, ...],
    keys: tuple[str, ...],
    step: str | None,
    job_id: str | None,
    when: str | None,
) -> None:
    """Record metric NAME with VALUE."""
    payload = MetricMeasured(
        name=name,
        value=value,
        unit=unit,
        tags=parse_pairs(tag, "--tag"),
        comparability_keys=list(keys) or None,
        step=step,
    )
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command()
@click.argument("key")
@click.argument("value")
@click.option("--author", default=lambda: os.environ.get("USER"))
@click.option("--target-job", help="Annotate another job.")
@click.option("--target-artifact", help="Annotate an artifact URI.")
@job_id_option
@time_option
@click.pass_context
def annotate(
    ctx: click.Context,
    key: str,
    value: str,
    author: str | None,
    target_job: str | None,
    target_artifact: str | None,
    job_id: str | None,
    when: str | None,
) -> None:
    """Annotate the job (or --target-job / --target-artifact) with KEY=VALUE.

    An artifact's annotation needs no job: without --job-id it travels under the key ``artifact:URI``, which
    makes no job row."""
    if target_job and target_artifact:
        raise click.UsageError("--target-job and --target-artifact exclude each other")
    owner = job_id or target_job or (f"artifact:{target_artifact}" if target_artifact else None)
    payload = Annotation(
        key=key,
        value=value,
        author=author,
        target_type="artifact" if target_artifact else "job",
        target=target_artifact or target_job,
    )
    _send(ctx, [(_require(owner), payload, parse_time(when), _attempt())])


@emit.command()
@click.argument("uri")
@click.option("--used", "direction", flag_value="used", help="The job read URI.")
@click.option("--produced", "direction", flag_value="produced", help="The job wrote URI.")
@click.option("--checksum")
@click.option("--size", type=int)
@click.option("--role")
@click.option("--step")
@job_id_option
@time_option
@click.pass_context
def artifact(
    ctx: click.Context,
    uri: str,
    direction: str | None,
    checksum: str | None,
    size: int | None,
    role: str | None,
    step: str | None,
    job_id: str | None,
    when: str | None,
) -> None:
    """Record an artifact the job used or produced."""
    if direction is None:
        raise click.UsageError("say --used or --produced")
    cls = ArtifactUsed if direction == "used" else ArtifactProduced
    payload = cls(uri=uri, checksum=checksum, size_bytes=size, role=role, step=step)
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command()
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--dataset", multiple=True, metavar="NAME[@VERSION]")
@click.option("--config-file", type=click.Path(exists=True, dir_okay=False), help="Hash this file as the config.")
@click.option("--software", multiple=True, metavar="PACKAGE=VERSION")
@job_id_option
@time_option
@click.pass_context
def provenance(
    ctx: click.Context,
    pairs: tuple[str, ...],
    dataset: tuple[str, ...],
    config_file: str | None,
    software: tuple[str, ...],
    job_id: str | None,
    when: str | None,
) -> None:
    """Declare provenance of the job."""
    datasets = [Dataset(name=d.partition("@")[0], version=d.partition("@")[2] or None) for d in dataset]
    payload = ProvenanceDeclared(
        values=parse_pairs(pairs, "KEY=VALUE"),
        datasets=datasets,
        config=config_ref(config_file) if config_file else None,
        software=parse_pairs(software, "--software"),
    )
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command()
@click.option("--name", required=True)
@click.option("--kind", type=click.Choice(JOB_KINDS), default="batch", show_default=True)
@click.option("--parent-job-id")
@click.option("--workflow-id")
@click.option("--submitter")
@click.option("--machine")
@job_id_option
@time_option
@click.pass_context
def submitted(
    ctx: click.Context,
    name: str,
    kind: str,
    parent_job_id: str | None,
    workflow_id: str | None,
    submitter: str | None,
    machine: str | None,
    job_id: str | None,
    when: str | None,
) -> None:
    """Record that a job was submitted (for importing historical jobs)."""
    payload = JobSubmitted(
        name=name,
        kind=kind,
        parent_job_id=parent_job_id,
        workflow_id=workflow_id,
        submitter=submitter,
        machine=machine,
    )
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command("status")
@click.argument("state", type=click.Choice(JOB_WAIT_STATUSES))
@click.option("--reason")
@job_id_option
@time_option
@click.pass_context
def status_changed(ctx: click.Context, state: str, reason: str | None, job_id: str | None, when: str | None) -> None:
    """Record a scheduler-side state of the job: queued, held or released."""
    payload = JobStatusChanged(status=state, reason=reason)
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command()
@click.option("--status", type=click.Choice(JOB_STATUSES), required=True)
@click.option("--exit-code", type=int)
@click.option("--signal", "signum", type=int)
@click.option("--duration-ms", type=int)
@job_id_option
@time_option
@click.pass_context
def finished(
    ctx: click.Context,
    status: str,
    exit_code: int | None,
    signum: int | None,
    duration_ms: int | None,
    job_id: str | None,
    when: str | None,
) -> None:
    """Record that a job ended (for importing historical jobs)."""
    payload = JobFinished(status=status, exit_code=exit_code, signal=signum, duration_ms=duration_ms)
    _send(ctx, [(_require(job_id), payload, parse_time(when), _attempt())])


@emit.command()
@click.argument("source", type=click.File("rb"))
@click.pass_context
def jsonl(ctx: click.Context, source: BinaryIO) -> None:
    """Backfill events from JSON lines: {"type", "job_id", "time", "attempt"?, "payload"}.

    Every line is checked first; if any is bad, nothing is emitted and each bad line is named.
    """
    events: list[tuple[str, Any, datetime | None, int]] = []
    problems: list[str] = []
    for number, raw in enumerate(source, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            continue
        if not line.strip():
            continue
        try:
            events.append(_parse_line(line))
        except (ValueError, TypeError, KeyError, click.BadParameter) as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        raise click.UsageError("nothing emitted; bad input:\n  " + "\n  ".join(problems[:50]))
    _send(ctx, events)
    click.echo(f"emitted {len(events)} events", err=True)


def _parse_line(line: str) -> tuple[str, Any, datetime | None, int]:
    item = json.loads(line)
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    unknown = set(item) - {"type", "job_id", "time", "attempt", "payload"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    cls = PAYLOAD_BY_NAME.get(item.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {item.get('type')!r}; known: {', '.join(PAYLOAD_BY_NAME)}")
    job_id = item.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("job_id is required")
    payload_fields = item.get("payload", {})
    if not isinstance(payload_fields, dict):
        raise ValueError("payload must be an object")
    payload = from_avro(cls, payload_fields, strict=True)
    attempt = item.get("attempt", 1)
    if not isinstance(attempt, int) or attempt < 1:
        raise ValueError("attempt must be a positive integer")
    raw_time = item.get("time")
    when = parse_time(None if raw_time is None else str(raw_time))
    _check(payload, when)
    return job_id, payload, when, attempt
