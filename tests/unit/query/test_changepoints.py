"""The change-point detector on series whose truth is known: a step is found where it is, with its size and
direction; noise that only looks unusual (heavy tails, single outliers, slow drift, a change of spread) is not
a change; outliers are their own signal."""

from __future__ import annotations

import numpy as np
import pytest

from jobprov.errors import QueryError
from jobprov.query.changepoints import IncrementalDetector, against_baseline, detect


def _noise(seed: int, n: int = 120) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, n)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sigmas", [-5.0, -2.0, 2.0, 5.0])
def test_a_step_is_found_where_it_is_with_its_size(seed: int, sigmas: float) -> None:
    x = 100 + _noise(seed)
    x[70:] += sigmas
    (change,) = detect(list(x)).changes
    assert abs(change.index - 70) <= 3
    assert change.size == pytest.approx(sigmas, abs=0.6)
    assert change.confidence > 0.999


def test_two_steps_and_a_revert() -> None:
    x = 10 + _noise(7, 150)
    x[50:] += 4
    x[100:] -= 4
    assert [c.index for c in detect(list(x)).changes] == pytest.approx([50, 100], abs=2)


@pytest.mark.parametrize("seed", range(5))
def test_noise_that_only_looks_unusual_is_no_change(seed: int) -> None:
    rng = np.random.default_rng(seed)
    heavy = 100 + rng.standard_t(2, 120)
    outliers = 100 + rng.normal(0, 1, 120)
    outliers[[20, 60, 90]] += [12, -9, 15]
    drift = 100 + rng.normal(0, 1, 120) + np.linspace(0, 4, 120)
    spread = rng.normal(0, 1, 120)
    spread[60:] *= 3
    spread += 100
    bimodal = 100 + rng.choice([-1.5, 1.5], 120) + rng.normal(0, 0.5, 120)
    for name, x in [
        ("heavy", heavy),
        ("outliers", outliers),
        ("drift", drift),
        ("spread", spread),
        ("bimodal", bimodal),
    ]:
        assert detect(list(x)).changes == [], name


def test_outliers_are_reported_apart() -> None:
    x = 100 + _noise(3)
    x[[20, 60, 90]] += [12, -9, 15]
    detection = detect(list(x))
    assert detection.changes == [] and detection.outliers == [20, 60, 90]


def test_short_series_and_bad_arguments() -> None:
    assert detect([1.0, 2.0, 3.0]).changes == []
    assert [c.index for c in detect([10, 10.2, 9.9, 10.1, 9.8, 10, 10.1, 16, 15.9, 16.2, 16.1]).changes] == [7]
    assert detect([5.0] * 20).changes == []
    with pytest.raises(QueryError):
        detect([1.0] * 10, alpha=0)


def test_new_points_against_their_baseline() -> None:
    base = list(100 + _noise(11, 30))
    assert against_baseline(base[:4], [200.0]) is None  # too few to judge
    far = against_baseline(base, [106.0])
    near = against_baseline(base, [100.5])
    assert far is not None and far.p_value < 1e-3 and far.size > 5
    assert near is not None and near.p_value > 0.05
    repeated = against_baseline(base, [102.0, 102.3, 101.8, 102.1])
    assert repeated is not None and repeated.p_value < 1e-3


def test_non_finite_values_are_no_level_and_keep_their_indices() -> None:
    import math as _math

    values = [10.0 + 0.1 * (i % 3) for i in range(30)] + [20.0 + 0.1 * (i % 3) for i in range(30)]
    values[5], values[40] = _math.nan, _math.inf
    (change,) = detect(values).changes
    assert change.index == 30


def test_only_the_newest_points_are_searched() -> None:
    from jobprov.query.changepoints import MAX_POINTS

    old_step = [0.0 + 0.1 * (i % 3) for i in range(200)] + [5.0 + 0.1 * (i % 3) for i in range(20_000)]
    values = old_step + [9.0 + 0.1 * (i % 3) for i in range(50)]
    found = detect(values)
    assert [c.index for c in found.changes] == [len(values) - 50], "the step long before the newest points is history"
    assert len(values) - MAX_POINTS > 200


def _stepped(seed: int, n: int, steps: dict[int, float]) -> list[float]:
    values = _noise(seed, n)
    for at, size in steps.items():
        values[at:] += size
    return [float(v) for v in values]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_incremental_detector_answers_as_a_full_search(seed: int) -> None:
    values = _stepped(seed, 240, {50: 4.0, 130: -3.0})
    detector = IncrementalDetector()
    searched = 0
    for end in range(6, len(values) + 1):  # a bucket receiving its points one by one
        found = detector.detect("bucket", values[:end])
        searched += end
        if end % 15 == 0 or end == len(values):  # (a full search of every prefix would take a minute)
            assert found == detect(values[:end]), f"prefix of {end}"
    assert [c.index for c in found.changes] == pytest.approx([50, 130], abs=2)
    assert detector.searched < 0.75 * searched, "once a cut is settled only the points after it are searched"


def test_the_incremental_detector_searches_a_changed_series_in_full() -> None:
    values = _stepped(4, 240, {80: 5.0})
    detector = IncrementalDetector()
    detector.detect("bucket", values)
    detector.detect("bucket", values)  # the same series again: the last answer, nothing searched
    assert detector.searched == len(values)
    rewritten = [*values[:10], values[10] + 50.0, *values[11:], 7.0]  # a point in the middle changed
    assert detector.detect("bucket", rewritten) == detect(rewritten)
    assert detector.searched == 2 * len(values) + 1, "a series that did not only grow is searched in full"
    assert detector.detect("bucket", rewritten, alpha=0.01) == detect(rewritten, alpha=0.01), "other settings"


def test_the_incremental_detector_forgets_the_least_recent_series() -> None:
    detector = IncrementalDetector(capacity=2)
    for key in ("a", "b", "c"):
        detector.detect(key, _stepped(5, 30, {}))
    searched = detector.searched
    detector.detect("c", _stepped(5, 30, {}))
    assert detector.searched == searched, "remembered"
    detector.detect("a", _stepped(5, 30, {}))
    assert detector.searched == searched + 30, "forgotten: searched again"
