"""The fold is pure: no I/O, clock or randomness in its code, and the same events give the same state."""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import io
import os
import random
import re
import socket
import time
import tokenize

import pytest

import jobprov.stream_processors.fold as fold_module
from jobprov.schemas.models import StepFinished, StepStarted
from jobprov.stream_processors import comparability, lifecycle, provenance, records, state
from jobprov.stream_processors.fold import fold, snapshot
from jobprov.stream_processors.records import MetricPoint, ResourcePoint, StepState
from jobprov.stream_processors.state import SeqSet

FORBIDDEN = {
    "open(": re.compile(r"\bopen\s*\("),
    "time.": re.compile(r"\btime\s*\."),
    "random": re.compile(r"\brandom\b"),
    "datetime.now": re.compile(r"\bdatetime\s*\.\s*(now|utcnow|today)\b"),
    "os.": re.compile(r"\bos\s*\."),
}
PURE_STDLIB = {
    "__future__",
    "bisect",
    "collections",
    "copy",
    "dataclasses",
    "typing",
    "functools",
    "itertools",
    "operator",
}


def _code_only(source: str) -> str:
    """The source without comments and string literals (the docstring says "no randomness")."""
    kept = [
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type not in (tokenize.COMMENT, tokenize.STRING)
    ]
    return " ".join(kept)


def test_code_only_strips_words_in_docstrings_but_not_calls():
    code = _code_only('"""no randomness, no time.sleep"""\n# os.path\nx = open("f")\n')
    assert [name for name, rx in FORBIDDEN.items() if rx.search(code)] == ["open("]


@pytest.mark.parametrize("module", [fold_module, lifecycle, provenance, state, records])
def test_fold_code_has_no_io_clock_or_randomness(module):
    code = _code_only(inspect.getsource(module))
    found = [name for name, rx in FORBIDDEN.items() if rx.search(code)]
    assert found == [], f"{module.__name__} uses {found}"


@pytest.mark.parametrize("module", [fold_module, lifecycle, provenance, state, records])
def test_fold_imports_only_pure_modules(module):
    tree = ast.parse(inspect.getsource(module))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    impure = {name for name in imported if name.split(".")[0] not in PURE_STDLIB | {"jobprov"}}
    assert impure == set(), f"{module.__name__} imports {impure}"


def test_fold_uses_only_the_pure_part_of_comparability():
    tree = ast.parse(inspect.getsource(fold_module))
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == comparability.__name__
        for alias in node.names
    }
    assert "load_registry" not in names
    for name in names:
        code = _code_only(inspect.getsource(getattr(comparability, name)))
        assert not [k for k, rx in FORBIDDEN.items() if rx.search(code)], name


def _refuse(*args, **kwargs):
    raise AssertionError("the fold did I/O or read the clock")


def test_folding_touches_no_io_clock_or_randomness(monkeypatch, realistic, fold_events, context):
    events = realistic(second_attempt=True)
    expected = fold_events(events)
    with monkeypatch.context() as patch:
        for target, name in [
            (builtins, "open"),
            (io, "open"),
            (os, "open"),
            (os, "urandom"),
            (time, "time"),
            (time, "time_ns"),
            (time, "monotonic"),
            (random, "random"),
            (random, "randint"),
            (socket, "socket"),
        ]:
            patch.setattr(target, name, _refuse)
        state, outputs = fold_events(events)
        job = snapshot(state, state.last_event_ms + 1, context)
    assert outputs == expected[1]
    assert job == snapshot(expected[0], expected[0].last_event_ms + 1, context)


def test_two_orders_in_one_process_give_equal_snapshots(realistic, fold_events, latest, context):
    events = realistic(second_attempt=True, late_provenance=True, n_metrics=3)
    forward, forward_out = fold_events(events)
    backward, backward_out = fold_events(list(reversed(events)))
    interleaved, interleaved_out = fold_events(events[1::2] + events[0::2])
    assert snapshot(forward) == snapshot(backward) == snapshot(interleaved)
    assert latest(forward_out) == latest(backward_out) == latest(interleaved_out)
    assert forward.provenance_values() == backward.provenance_values()
    # The two states are independent: folding more into one leaves the other alone.
    before = snapshot(backward)
    fold(forward, dataclasses.replace(events[-1], event_id="one-more", seq=10_000), context)
    assert snapshot(forward) != before
    assert snapshot(backward) == before


def _seqs(*numbers: int) -> SeqSet:
    seqs = SeqSet()
    for n in numbers:
        seqs.add(n)
    return seqs


def test_fold_state_starts_from_the_first_event(realistic, context):
    events = realistic()
    state, out = fold(None, events[0], context)
    assert state.job_id == "job-1"
    assert state.version == 1
    assert state.seqs[events[0].producer.instance_id] == _seqs(events[0].seq)
    assert [r.KIND for r in out] == ["lineage_edge", "lineage_edge", "provenance"]


# --- the other outputs of a realistic history ----------------------------------------------------------------------


def test_realistic_history_outputs(realistic, fold_events, latest, history):
    events = realistic()
    _, outputs = fold_events(events)
    kept = latest(outputs)
    steps = {r.name: r for r in kept.values() if isinstance(r, StepState)}
    assert set(steps) == {"load", "measure"}
    assert steps["load"].status == "succeeded"
    assert steps["measure"].status == "succeeded"
    assert steps["measure"].parent_step == "load"
    assert steps["measure"].caveats == ["partial sky"]
    step_events = [e for e in events if e.event_type.startswith("Step") and e.payload.name == "measure"]
    assert (steps["measure"].started_at_ms, steps["measure"].finished_at_ms) == tuple(
        history.ms(e) for e in step_events
    )
    resources = [r for r in outputs if isinstance(r, ResourcePoint)]
    assert [r.processes for r in resources] == [1, 1, 0]
    points = [r for r in outputs if isinstance(r, MetricPoint)]
    metrics = [e for e in events if e.event_type == "MetricMeasured"]
    assert {p.event_id for p in points} == {e.event_id for e in metrics}
    assert all(p.job_id == "job-1" and p.attempt == 1 for p in points)
    assert {r.KIND for r in outputs} == {
        "lineage_edge",
        "provenance",
        "step_state",
        "resource_point",
        "metric_point",
        "bucket_move",  # provenance declared after the first metric changes a key it is bucketed by
        "annotation",
    }


def test_step_finish_before_start_converges(history, fold_events, latest):
    h = history()
    h.add(StepStarted("fit", parent_step="train"))
    h.add(StepFinished("fit", status="failed", exception_type="RuntimeError", exception_message="nan"))
    forward = latest(fold_events(h.events)[1])
    backward_out = fold_events(list(reversed(h.events)))[1]
    assert latest(backward_out) == forward
    assert backward_out[0].status == "failed"
    assert backward_out[0].started_at_ms is None
    (step,) = forward.values()
    assert (step.status, step.parent_step, step.exception_type, step.exception_message) == (
        "failed",
        "train",
        "RuntimeError",
        "nan",
    )
