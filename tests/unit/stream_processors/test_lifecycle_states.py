"""A job's lifecycle as the fold derives it: statuses, attempts, anomalies, lost jobs, late events."""

from __future__ import annotations

import pytest

from jobprov.schemas.models import (
    Annotation,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ResourceSample,
)
from jobprov.stream_processors.fold import FoldContext, fold, snapshot
from jobprov.stream_processors.records import AnnotationRecord, MetricPoint

STARTED = JobStarted("nid001", "Linux", "6.1.0", "3.12.2", cwd="/scratch")


def _start(h, attempt=1):
    h.add(JobSubmitted("train", "batch", submitter="alice"), attempt=attempt)
    return h.add(STARTED, attempt=attempt)


def test_in_order_history_succeeds(realistic, fold_events, history):
    events = realistic()
    state, _ = fold_events(events)
    job = snapshot(state)
    submitted, started = events[0], events[1]
    finished = next(e for e in events if e.event_type == "JobFinished")
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert job.attempt_statuses == {"1": "succeeded"}
    assert job.exit_code == 0
    assert job.signal is None
    assert job.exception_type is None
    assert job.duration_ms == 21_000  # as the emitter measured it
    assert job.submitted_at_ms == history.ms(submitted)
    assert job.started_at_ms == history.ms(started)
    assert job.finished_at_ms == history.ms(finished)
    assert job.last_event_at_ms == history.ms(events[-1])  # the late annotation
    assert (job.name, job.kind, job.host, job.submitter) == ("reduce_coadd", "hpc", "nid001", "alice")
    assert (job.parent_job_id, job.workflow_id, job.dag_node) == ("parent-1", "wf-7", "coadd")
    assert job.scheduler_ids == {"slurm_job_id": "4242", "slurm_restart_count": "0"}
    assert job.anomalies == []
    assert job.event_count == len(events) == job.state_version
    # Cumulative samples: the largest value is the latest (including the wrapper's final totals).
    assert (job.cpu_user_s, job.cpu_system_s) == (9.5, 1.1)
    assert job.peak_rss_bytes == 350 << 20
    assert (job.io_read_bytes, job.io_write_bytes) == (5 << 20, 3 << 20)


def test_duration_falls_back_to_start_and_finish_times(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("succeeded", exit_code=0), after_ms=7_250)
    job = snapshot(fold_events(h.events)[0])
    assert job.duration_ms == 7_250


def test_exception_fails_the_job(history, fold_events):
    h = history()
    _start(h)
    h.add(
        JobFinished("failed", exit_code=1, exception_type="ValueError", exception_message="bad band 'y'"),
        after_ms=500,
    )
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "failed"
    assert job.attempt_statuses == {"1": "failed"}
    assert (job.exception_type, job.exception_message, job.exit_code) == ("ValueError", "bad band 'y'", 1)
    assert job.anomalies == []


def test_preempted_then_retried_attempt_succeeds(realistic, fold_events, history):
    events = realistic(second_attempt=True)
    job = snapshot(fold_events(events)[0])
    assert job.status == "succeeded"
    assert job.attempts == 2
    assert job.attempt_statuses == {"1": "retried", "2": "succeeded"}
    assert job.host == "nid002"  # the current attempt's
    assert job.duration_ms == 18_000
    assert job.started_at_ms == history.ms(events[1])  # the first start of all
    assert job.anomalies == []
    # Resources add up over the attempts.
    assert job.cpu_user_s == 19.0
    assert job.io_read_bytes == 10 << 20


def test_second_attempt_running_after_preemption(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("preempted", signal=15))
    _start(h, attempt=2)
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "running"
    assert job.attempt_statuses == {"1": "retried", "2": "running"}


def test_finish_without_start_is_flagged_and_counted(history, fold_events):
    h = history()
    h.add(JobSubmitted("train", "batch"))
    finished = h.add(JobFinished("succeeded", exit_code=0))
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "succeeded"
    assert job.finished_at_ms == history.ms(finished)
    assert job.exit_code == 0
    assert "attempt 1: finished without a start" in job.anomalies


def test_finish_without_start_is_flagged_in_a_retry(history, fold_events):
    """Attempt 2 only reported its end (its JobSubmitted and JobStarted never arrived)."""
    h = history()
    _start(h)
    h.add(JobFinished("preempted", signal=15))
    h.add(JobFinished("succeeded", exit_code=0), attempt=2)
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "succeeded"
    assert job.attempt_statuses == {"1": "retried", "2": "succeeded"}
    assert "attempt 2: finished without a start" in job.anomalies


def test_finish_alone_is_flagged(history, fold_events):
    h = history()
    h.add(JobFinished("succeeded", exit_code=0))
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert "attempt 1: finished without a start" in job.anomalies


def test_start_before_submission_is_flagged(history, fold_events):
    h = history()
    h.add(STARTED, at_ms=1_000)
    h.add(JobSubmitted("train", "batch"), at_ms=2_000)
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "running"
    assert job.anomalies == ["attempt 1: started before it was submitted"]


def test_heartbeat_after_finish_is_flagged(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("succeeded", exit_code=0))
    h.add(Heartbeat(30_000))
    job = snapshot(fold_events(h.events)[0])
    assert job.status == "succeeded"
    assert job.anomalies == ["attempt 1: activity after the end"]


def test_final_totals_after_finish_are_not_activity(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("succeeded", exit_code=0))
    h.add(ResourceSample(1.0, 0.1, 0, 10, threads=0, processes=0))
    assert snapshot(fold_events(h.events)[0]).anomalies == []


def test_conflicting_ends_are_flagged_and_the_latest_wins(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("failed", exit_code=1))
    h.add(JobFinished("succeeded", exit_code=0))
    for events in (h.events, list(reversed(h.events))):
        job = snapshot(fold_events(events)[0])
        assert job.status == "succeeded"
        assert job.exit_code == 0
        assert job.anomalies == ["attempt 1: conflicting ends ['failed', 'succeeded']"]


def test_retry_after_success_is_flagged(history, fold_events):
    h = history()
    _start(h)
    h.add(JobFinished("succeeded", exit_code=0))
    _start(h, attempt=2)
    job = snapshot(fold_events(h.events)[0])
    assert "attempt 1: retried after it succeeded" in job.anomalies
    assert job.attempt_statuses == {"1": "succeeded", "2": "running"}


@pytest.mark.parametrize("lost", [1, 2, 5])
def test_seq_gap_is_flagged_with_the_missing_count(history, fold_events, lost):
    h = history()
    _start(h)  # seq 1, 2
    h.skip_seq("job-1/attempt-1", lost)
    h.add(Heartbeat(30_000))
    h.add(JobFinished("succeeded", exit_code=0))
    job = snapshot(fold_events(h.events)[0])
    high = 2 + lost + 2
    assert job.anomalies == [f"emitter job-1/attempt-1: {lost} events missing between seq 1 and {high}"]
    assert job.status == "succeeded"


def test_seq_gap_heals_when_the_missing_event_arrives(history, fold_events, context):
    h = history()
    _start(h)
    h.add(Heartbeat(30_000))
    h.add(JobFinished("succeeded", exit_code=0))
    held_back = h.events.pop(2)
    state, _ = fold_events(h.events)
    assert snapshot(state).anomalies == ["emitter job-1/attempt-1: 1 events missing between seq 1 and 4"]
    fold(state, held_back, context)
    assert snapshot(state).anomalies == []


def test_separate_producers_do_not_make_gaps(realistic, fold_events):
    events = realistic(second_attempt=True)  # attempt 2 and the CLI have their own instances, seq from 1
    assert {e.producer.instance_id for e in events} == {"job-1/attempt-1", "job-1/attempt-2", "cli-annotate"}
    assert snapshot(fold_events(events)[0]).anomalies == []


# --- lost jobs -----------------------------------------------------------------------------------------------


def _running_job(history, heartbeats):
    h = history()
    _start(h)
    if heartbeats:
        h.add(Heartbeat(10_000))
        h.add(Heartbeat(20_000))  # the largest interval counts
    return h


def test_running_job_with_heartbeats_is_lost_after_three_intervals(history, fold_events, context):
    h = _running_job(history, heartbeats=True)
    state, _ = fold_events(h.events)
    last = history.ms(h.events[-1])
    assert snapshot(state, last + 60_000, context).status == "running"
    assert snapshot(state, last + 60_001, context).status == "lost"
    # Nothing sticks: a later event makes it running again.
    fold(state, h.add(Heartbeat(20_000), after_ms=120_000), context)
    assert snapshot(state, last + 60_001, context).status == "running"
    assert snapshot(state, last + 120_000 + 60_001, context).status == "lost"


def test_running_job_without_heartbeats_is_lost_after_the_timeout(history, fold_events):
    context = FoldContext(lost_after_ms=90_000)
    h = _running_job(history, heartbeats=False)
    state, _ = fold_events(h.events, context)
    last = history.ms(h.events[-1])
    assert snapshot(state, last + 90_000, context).status == "running"
    assert snapshot(state, last + 90_001, context).status == "lost"
    fold(state, h.add(MetricMeasured("loss", 0.1), after_ms=100_000), context)
    assert snapshot(state, last + 90_001, context).status == "running"


def test_default_lost_timeout_is_ten_minutes(history, fold_events):
    h = _running_job(history, heartbeats=False)
    state, _ = fold_events(h.events)
    last = history.ms(h.events[-1])
    assert snapshot(state, last + 600_000).status == "running"
    assert snapshot(state, last + 600_001).status == "lost"


def test_running_job_without_watermark_stays_running(history, fold_events, context):
    state, _ = fold_events(_running_job(history, heartbeats=True).events)
    assert snapshot(state).status == "running"
    assert snapshot(state, None, context).status == "running"


def test_finished_job_is_never_lost(realistic, fold_events, context):
    state, _ = fold_events(realistic())
    assert snapshot(state, state.last_event_ms + 10**9, context).status == "succeeded"


# --- late events after the end ----------------------------------------------------------------------------------


def test_late_annotation_and_metric_after_finish_are_recorded(history, fold_events, context):
    h = history()
    _start(h)
    h.add(JobFinished("succeeded", exit_code=0, duration_ms=1_000))
    state, _ = fold_events(h.events)
    note = h.add(Annotation("verdict", "looks fine", author="bob"), after_ms=3_600_000, instance="cli")
    late = h.add(MetricMeasured("AM1", 0.42, "arcsec"), after_ms=1_000)

    _, out = fold(state, note, context)
    assert out == [
        AnnotationRecord(
            job_id="job-1",
            event_id=note.event_id,
            target_type="job",
            target="job-1",
            key_name="verdict",
            value="looks fine",
            author="bob",
            time_ms=history.ms(note),
            state_version=state.version,
        )
    ]
    _, out = fold(state, late, context)
    assert len(out) == 1
    assert isinstance(out[0], MetricPoint)
    assert (out[0].event_id, out[0].metric, out[0].value, out[0].time_ms) == (
        late.event_id,
        "AM1",
        0.42,
        history.ms(late),
    )
    job = snapshot(state)
    assert job.status == "succeeded"
    assert job.anomalies == []  # annotations and metrics are not activity
    assert job.last_event_at_ms == history.ms(late)


def test_annotation_on_an_artifact_keeps_its_target(history, fold_events):
    h = history()
    note = h.add(Annotation("quality", "bad", target_type="artifact", target="s3://out/x.fits"))
    _, out = fold_events(h.events)
    assert [(r.target_type, r.target, r.event_id) for r in out] == [("artifact", "s3://out/x.fits", note.event_id)]
