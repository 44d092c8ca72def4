"""The emitter against a real broker: order per job, nothing missing, no loss when the broker fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.embedded.tansu import Broker
from jobprov.emitters.emitter import create_emitter
from jobprov.emitters.job import Job
from jobprov.emitters.spool import spool_status
from jobprov.schemas.models import JobFinished, MetricMeasured
from jobprov.settings import EmitterSettings
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, create_topic, events_of

Settings = Callable[..., EmitterSettings]


def test_a_jobs_events_arrive_complete_and_in_order(kafka: Endpoint, topic: str, settings_for: Settings) -> None:
    settings = settings_for(kafka.url(topic))
    emitter = create_emitter(settings)
    with Job(name="validate_drp", provenance={"dataset": "testdata_hsc", "band": "r"}, emitter=emitter) as job:
        for i in range(300):
            job.metric("AM1", 3.0 + i / 1000, unit="mas")
    report = emitter.close()
    assert report.delivered == 304 and report.spooled == 0 and report.lost == 0

    messages = consume(kafka.bootstrap, topic, expected=304)
    assert len(messages) == 304
    assert {m.key().decode() for m in messages} == {job.job_id}
    events = events_of(messages)
    assert [e.seq for e in events] == list(range(1, 305)), "one partition, in emit order"
    assert len({e.event_id for e in events}) == 304
    assert events[0].event_type == "JobSubmitted" and events[-1].event_type == "JobFinished"
    values = [e.payload.value for e in events if isinstance(e.payload, MetricMeasured)]
    assert values == [3.0 + i / 1000 for i in range(300)]
    assert spool_status(settings.spool_dir)["sealed_segments"] == 0


def test_an_exit_sends_at_once_whatever_the_linger(kafka: Endpoint, topic: str, settings_for: Settings) -> None:
    """Events wait up to linger_ms to share a produce request, but closing does not wait it out: with a linger
    far longer than the flush timeout, every event is still delivered, none spooled."""
    emitter = create_emitter(settings_for(kafka.url(topic), linger_ms=25_000, flush_timeout_s=5.0))
    with Job(name="lingering", emitter=emitter) as job:
        job.metric("AM1", 1.0)
    report = emitter.close()
    assert report.delivered == 5 and report.spooled == 0 and report.lost == 0
    assert len(consume(kafka.bootstrap, topic, expected=5)) == 5


def test_jobs_stay_ordered_per_key_across_partitions(kafka: Endpoint, settings_for: Settings) -> None:
    topic = create_topic(kafka.bootstrap, f"events-multi-{time.monotonic_ns()}", partitions=4)
    emitter = create_emitter(settings_for(kafka.url(topic)))
    job_ids = [f"job-{i}" for i in range(8)]
    for round_ in range(50):
        for job_id in job_ids:
            emitter.emit(job_id, MetricMeasured(name="PA1", value=float(round_)))
    assert emitter.close().delivered == 400
    messages = consume(kafka.bootstrap, topic, expected=400)
    assert len(messages) == 400
    partitions: dict[str, set[int]] = {}
    for msg in messages:
        partitions.setdefault(msg.key().decode(), set()).add(msg.partition())
    assert all(len(p) == 1 for p in partitions.values()), "a job's events share one partition"
    for job_id in job_ids:
        mine = [e for e in events_of(messages) if e.job_id == job_id]
        assert [e.payload.value for e in mine] == [float(r) for r in range(50)]


def test_broker_down_at_start_spools_then_drain_delivers_each_event_once(
    own_broker: Broker, settings_for: Settings, tmp_path: Path
) -> None:
    url = own_broker.url("events")
    settings = settings_for(url, delivery_timeout_ms=3000, flush_timeout_s=3.0)
    emitter = create_emitter(settings)
    started = time.monotonic()
    with Job(name="offline", emitter=emitter) as job:
        for i in range(40):
            job.metric("TE1", float(i))
    report = emitter.close()
    assert time.monotonic() - started < settings.flush_timeout_s + 2, "the job was held too long at exit"
    assert report.delivered == 0 and report.spooled == 44 and report.lost == 0
    assert spool_status(settings.spool_dir)["sealed_segments"] >= 1

    own_broker.start()
    create_topic(own_broker.bootstrap, "events")
    runner = CliRunner()
    env = {"JOBPROV_SPOOL_DIR": settings.spool_dir, "JOBPROV_URL": url}
    result = runner.invoke(cli, ["spool", "drain", "--timeout", "30"], env=env)
    assert result.exit_code == 0, result.output
    assert '"sent": 44' in result.output
    again = runner.invoke(cli, ["spool", "drain"], env=env)
    assert again.exit_code == 0 and '"sent": 0' in again.output

    events = events_of(consume(own_broker.bootstrap, "events", expected=44))
    assert len(events) == 44
    assert len({e.event_id for e in events}) == 44
    assert {e.job_id for e in events} == {job.job_id}
    assert sorted(e.seq for e in events) == list(range(1, 45))
    assert spool_status(settings.spool_dir)["sealed_segments"] == 0


def test_broker_killed_mid_job_loses_nothing(own_broker: Broker, settings_for: Settings) -> None:
    own_broker.start()
    create_topic(own_broker.bootstrap, "events")
    settings = settings_for(own_broker.url("events"), delivery_timeout_ms=3000, flush_timeout_s=3.0)
    emitter = create_emitter(settings)
    for i in range(100):
        emitter.emit("job-k", MetricMeasured(name="AM1", value=float(i)))
    assert emitter.flush(10)
    before = events_of(consume(own_broker.bootstrap, "events", expected=100, idle=0.5))
    assert len(before) == 100

    own_broker.stop(kill=True)
    for i in range(100, 200):
        emitter.emit("job-k", MetricMeasured(name="AM1", value=float(i)))
    emitter.emit("job-k", JobFinished(status="succeeded"))
    started = time.monotonic()
    report = emitter.close()
    assert time.monotonic() - started < settings.flush_timeout_s + 2
    assert report.lost == 0
    assert report.delivered + report.spooled == 201

    # Tansu keeps topics in memory: the restarted broker is empty, so what it had is already in `before`.
    own_broker.start()
    create_topic(own_broker.bootstrap, "events")
    result = CliRunner().invoke(
        cli,
        ["spool", "drain"],
        env={"JOBPROV_SPOOL_DIR": settings.spool_dir, "JOBPROV_URL": own_broker.url("events")},
    )
    assert result.exit_code == 0, result.output
    after = events_of(consume(own_broker.bootstrap, "events", expected=report.spooled))
    seqs = sorted({e.seq for e in before} | {e.seq for e in after})
    assert seqs == list(range(1, 202)), "every event made it to the broker once the spool was drained"


def test_the_next_job_drains_what_an_earlier_one_spooled(own_broker: Broker, settings_for: Settings) -> None:
    settings = settings_for(own_broker.url("events"), delivery_timeout_ms=2000, flush_timeout_s=2.0)
    first = create_emitter(settings)
    for i in range(30):
        first.emit("job-offline", MetricMeasured(name="AM1", value=float(i)))
    assert first.close().spooled == 30

    own_broker.start()
    create_topic(own_broker.bootstrap, "events")
    second = create_emitter(settings)
    second.emit("job-online", MetricMeasured(name="AM1", value=1.0))
    report = second.close()
    assert report.delivered == 1

    events = events_of(consume(own_broker.bootstrap, "events", expected=31))
    assert sorted(e.job_id for e in events) == ["job-offline"] * 30 + ["job-online"]
    assert spool_status(settings.spool_dir) == {
        "sealed_segments": 0,
        "open_segments": 0,
        "bytes": 0,
        "quarantined_segments": 0,
    }


def test_a_job_does_not_wait_for_the_background_drain(own_broker: Broker, settings_for: Settings) -> None:
    """With the broker down and something in the spool, the drain's reachability probe (2 s) runs in the
    background; a job's close must not wait for it."""
    settings = settings_for(own_broker.url("events"), delivery_timeout_ms=2000, flush_timeout_s=5.0)
    earlier = create_emitter(settings)
    earlier.emit("job-earlier", MetricMeasured(name="AM1", value=1.0))
    assert earlier.close().spooled == 1

    timings = []
    for _ in range(3):
        emitter = create_emitter(settings)  # starts the background drain: the spool is not empty
        assert emitter._drainer is not None
        emitter.emit("job-now", MetricMeasured(name="AM1", value=2.0))
        started = time.monotonic()
        report = emitter.close()
        timings.append(time.monotonic() - started)
        assert report.spooled == 1 and report.lost == 0
    # librdkafka notices a refused connection in tens of milliseconds; the probe alone took 2 s.
    assert max(timings) < 1.0, f"close took {timings} s"


def test_a_spool_that_cannot_be_created_still_delivers_to_the_configured_broker(
    kafka: Endpoint, topic: str, settings_for: Settings, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the spool's parent should be")
    emitter = create_emitter(settings_for(kafka.url(topic), spool_dir=str(blocker / "spool")))
    for i in range(20):
        emitter.emit("job-nospool", MetricMeasured(name="AM1", value=float(i)))
    report = emitter.close()
    assert report.delivered == 20 and report.lost == 0
    events = events_of(consume(kafka.bootstrap, topic, expected=20))
    assert sorted(e.payload.value for e in events if isinstance(e.payload, MetricMeasured)) == [
        float(i) for i in range(20)
    ]
