"""Properties of the fold: arrival order, duplicates and replays do not change what a job's history means."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jobprov.stream_processors.comparability import bucket_of
from jobprov.stream_processors.fold import fold, snapshot
from jobprov.stream_processors.records import MetricPoint, ProvenanceRecord

PROPERTY = settings(max_examples=150, deadline=None, database=None)


def _watermarks(state):
    """Watermarks around the lost thresholds (3 heartbeat intervals of 15 s or 30 s), so lost-ness is compared."""
    return [None, *(state.last_event_ms + offset for offset in (0, 45_001, 90_001, 10**9))]


@PROPERTY
@given(data=st.data())
def test_any_arrival_order_converges(data, histories, fold_events, latest, context):
    events = data.draw(histories, label="history")
    shuffled = data.draw(st.permutations(events), label="arrival order")
    in_order, in_order_out = fold_events(events)
    state, outputs = fold_events(shuffled)

    assert snapshot(state) == snapshot(in_order)
    for watermark in _watermarks(in_order):
        assert snapshot(state, watermark, context) == snapshot(in_order, watermark, context)
    assert latest(outputs) == latest(in_order_out)


@PROPERTY
@given(data=st.data())
def test_latest_metric_points_use_the_final_provenance(data, histories, fold_events, latest, context):
    """Whatever the order, the point a sink keeps for each metric is bucketed with the final provenance of the
    metric's own attempt (a retry on another host does not move the first attempt's points)."""
    events = data.draw(histories, label="history")
    shuffled = data.draw(st.permutations(events), label="arrival order")
    state, outputs = fold_events(shuffled)
    kept = latest(outputs)
    (provenance,) = [r for r in kept.values() if isinstance(r, ProvenanceRecord)]
    assert provenance.values == state.provenance_values()
    metric_events = {e.event_id: e for e in events if e.event_type == "MetricMeasured"}
    points = [r for r in kept.values() if isinstance(r, MetricPoint)]
    assert {p.event_id for p in points} == set(metric_events)
    for point in points:
        payload = metric_events[point.event_id].payload
        attempt = metric_events[point.event_id].attempt
        effective = {**state.provenance_values(attempt), **payload.tags}
        keys = payload.comparability_keys
        assert point.bucket == bucket_of(payload.name, effective, keys=keys, registry=context.registry)
        assert point.value == payload.value
        assert point.registry_version == context.registry.version


@PROPERTY
@given(data=st.data())
def test_duplicates_change_nothing(data, histories, fold_events, latest, context):
    events = data.draw(histories, label="history")
    extra = data.draw(st.lists(st.sampled_from(events), max_size=2 * len(events)), label="redelivered")
    stream = data.draw(st.permutations(events + extra), label="arrival order")
    reference, reference_out = fold_events(events)

    state = None
    outputs = []
    seen = set()
    for event in stream:
        version_before = state.version if state is not None else 0
        state, out = fold(state, event, context)
        if event.event_id in seen:
            assert out == []
            assert state.version == version_before
        else:
            assert state.version == version_before + 1
        seen.add(event.event_id)
        outputs += out

    assert snapshot(state) == snapshot(reference)
    assert snapshot(state).event_count == len(events)
    assert latest(outputs) == latest(reference_out)


@PROPERTY
@given(data=st.data())
def test_refolding_a_whole_history_into_its_own_state_is_a_no_op(data, histories, fold_events, context):
    events = data.draw(histories, label="history")
    state, _ = fold_events(events)
    before = snapshot(state)
    again = data.draw(st.permutations(events), label="redelivery order")
    state, outputs = fold_events(again, context, state)
    assert outputs == []
    assert snapshot(state) == before


@PROPERTY
@given(data=st.data())
def test_replaying_a_log_twice_gives_identical_outputs(data, histories, fold_events):
    events = data.draw(histories, label="history")
    extra = data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="redelivered")
    log = data.draw(st.permutations(events + extra), label="log order")
    first_state, first = fold_events(log)
    second_state, second = fold_events(log)
    assert first == second  # full equality, state_version included
    assert [r.state_version for r in first] == [r.state_version for r in second]
    assert snapshot(first_state) == snapshot(second_state)
