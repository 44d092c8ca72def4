"""`jobprov ingest ...`: long-running consumers of other tools' Kafka topics (OpenLineage, Slurm's jobcomp/kafka).

Each reads its topic in a consumer group, sends the records as events where the emitter sends (`--url`), and
commits a batch once its events are with the broker or the spool; a bad record is reported with its offset and
dead-lettered with the reason (`emitters/importers/topic.py`). SIGTERM or Ctrl-C stops it after the batch in hand.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from jobprov.cli.common import SuggestingGroup, settings_from
from jobprov.emitters.importers.topic import Reader
from jobprov.errors import JobprovError


def _options(default_group: str) -> Callable[[Any], Any]:
    def apply(command: Any) -> Any:
        for option in reversed(
            [
                click.option("--topic", required=True, help="The topic to read."),
                click.option(
                    "--bootstrap",
                    help="Kafka bootstrap servers of the topic (default: those of --url, where events go).",
                ),
                click.option("--group", default=default_group, show_default=True, help="Consumer group id."),
                click.option(
                    "--dead-letter-topic",
                    help="Where bad records go, with the reason in their headers (default: TOPIC.dlq; '' for none: "
                    "bad records are then only reported).",
                ),
                click.option(
                    "--exit-when-idle",
                    type=float,
                    help="Stop once nothing arrived for this many seconds (default: run until stopped).",
                ),
                click.option("--session-timeout", type=float, default=10.0, show_default=True, help="Seconds."),
            ]
        ):
            command = option(command)
        return command

    return apply


def _run(
    ctx: click.Context, read: Reader, importer: str, topic: str, bootstrap: str | None, group: str,
    dead_letter_topic: str | None, exit_when_idle: float | None, session_timeout: float,
) -> None:  # fmt: skip
    from jobprov.emitters.importers.topic import TopicIngest
    from jobprov.emitters.kafka import parse_kafka_url

    settings = settings_from(ctx)
    if bootstrap is None:
        if not settings.url.startswith("kafka://"):
            raise click.UsageError("--bootstrap is needed when events do not go to Kafka (--url)")
        bootstrap, _ = parse_kafka_url(settings.url)
    dead = f"{topic}.dlq" if dead_letter_topic is None else dead_letter_topic or None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        ingest = TopicIngest(
            bootstrap, topic, group, read, importer, settings, dead_letter_topic=dead,
            report=lambda line: click.echo(line, err=True), session_timeout_s=session_timeout,
        )  # fmt: skip
        click.echo(f"reading {topic} at {bootstrap} as {group}; bad records to {dead or 'stderr only'}", err=True)
        stats = ingest.run(stop, exit_when_idle_s=exit_when_idle)
    except JobprovError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"read {stats.records} records: {stats.events} events sent, {stats.bad} bad records skipped, "
        f"{stats.commits} commits",
        err=True,
    )


@click.group(cls=SuggestingGroup)
def ingest() -> None:
    """Consume other tools' Kafka topics as jobs (run until stopped)."""


@ingest.command("openlineage-kafka")
@_options("jobprov-ingest-openlineage")
@click.pass_context
def openlineage_kafka(ctx: click.Context, /, **options: Any) -> None:
    """OpenLineage RunEvents from a topic (what the OpenLineage KafkaTransport publishes): the same mapping as
    POST /api/v1/lineage."""
    from jobprov.emitters.importers.openlineage import IMPORTER, read_run_event

    _run(ctx, read_run_event, IMPORTER, **options)


@ingest.command("slurm-jobcomp")
@_options("jobprov-ingest-slurm-jobcomp")
@click.pass_context
def slurm_jobcomp(ctx: click.Context, /, **options: Any) -> None:
    """Slurm's jobcomp/kafka records (JobCompType=jobcomp/kafka): the same mapping as `jobprov import slurm`."""
    from jobprov.emitters.importers.slurm import IMPORTER
    from jobprov.emitters.importers.slurm_forms import JobcompReader

    _run(ctx, JobcompReader(), IMPORTER, **options)
