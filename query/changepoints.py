"""Change points of one series: where its level moved and stayed moved.

:func:`detect` finds candidate change points with PELT (ruptures, the least-absolute-deviation cost, so a few
wild points cost little) on the series scaled by a robust estimate of its noise, then keeps a candidate only when
the segments either side of it pass three checks, dropping the weakest failing candidate and checking again
until every one left passes (as Otava prunes its weak change points):

- **significance**: Welch's t-test of the two segments, each clipped to its median ± 3 robust deviations (a
  heavy tail or a single outlier then weighs like an ordinary point), p-value below ``alpha``;
- **size**: the medians of the two segments differ by at least ``min_effect`` robust deviations;
- **a step, not a slope**: a level change fits the points near the candidate better than a straight line does
  (slow drift is a slope: each cut PELT makes in it fails this check).

A change of spread alone leaves the medians where they were and fails the first two checks. Single points far
from their segment's level are reported apart, as outliers.

Pure functions of the values: no store, no clock, deterministic. ruptures, numpy and scipy are imported when
first used (the ``detect`` extra).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from jobprov.errors import ConfigError, QueryError

ALPHA = 1e-3
MIN_EFFECT = 0.5
MIN_SIZE = 3
PENALTY = 3.0  # per change point, in units of log(n), on the series in robust deviations
# The newest points of a series searched: the search's time grows faster than its length (a 20k-point bucket ran
# for minutes), and a change far back is history, not news. Bounds every request's CPU.
MAX_POINTS = 2_000
CLIP = 3.0
OUTLIER_K = 5.0
_WINDOW = 40  # points either side a candidate is judged on (older points say nothing about this change)


@dataclass(frozen=True)
class ChangePoint:
    """The level moved at ``index`` (the first point of the new level)."""

    index: int
    before: float  # median of the segment before
    after: float  # median of the segment after
    scale: float  # the series' robust standard deviation
    p_value: float

    @property
    def size(self) -> float:
        return self.after - self.before

    @property
    def deviations(self) -> float:
        return self.size / self.scale

    @property
    def confidence(self) -> float:
        return 1.0 - self.p_value


@dataclass(frozen=True)
class Detection:
    changes: list[ChangePoint]
    outliers: list[int]  # indices of single points far from their segment's level
    scale: float


def _numpy() -> tuple[Any, Any, Any]:
    try:
        import numpy as np
        import ruptures
        from scipy import stats
    except ImportError as exc:  # pragma: no cover - the extra is part of every install that queries
        raise ConfigError("detect", "change-point detection needs ruptures: pip install 'jobprov[detect]'") from exc
    return np, ruptures, stats


def preload() -> None:
    """Import the detector's libraries now: about 1.5 s, nearly all of it ruptures pulling in scipy's statistics,
    spatial and signal modules (``python -X importtime``). `jobprov up` does it while it starts; left to the first
    scan, the import held the interpreter lock for that long while the worker folded the first events (a quarter
    of the service's samples over benchmarks/stream.py's run, py-spy)."""
    _numpy()


def robust_scale(values: Any) -> float:
    """The noise's standard deviation, from successive differences (a step or a slow drift barely moves it),
    or from the spread of the values when most differences are equal; never below a tiny fraction of the level
    (a constant series has no noise to divide by)."""
    np, _, _ = _numpy()
    x = np.asarray(values, dtype=float)
    if len(x) < 3:
        return max(float(np.max(np.abs(x))) * 1e-6 if len(x) else 0.0, 1e-12)
    diffs = np.diff(x)
    scale = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)
    spread = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    if scale < 0.25 * spread:  # most differences equal (values on a grid, a repeating pattern): they say nothing
        scale = spread
    return max(scale, float(np.median(np.abs(x))) * 1e-6, 1e-12)


def _checked(alpha: float, min_effect: float, min_size: int, penalty: float) -> None:
    if not 0 < alpha < 1:
        raise QueryError("alpha: between 0 and 1 (exclusive)")
    if min_size < 2 or min_effect < 0 or penalty <= 0:
        raise QueryError("min_size >= 2, min_effect >= 0, penalty > 0")


def detect(
    values: Sequence[float],
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    min_size: int = MIN_SIZE,
    penalty: float = PENALTY,
) -> Detection:
    """The series' change points (in index order) and outliers; see the module's description of the checks.

    Only the newest :data:`MAX_POINTS` finite values are searched (a NaN or infinity is no level); indices are those
    of ``values``."""
    _checked(alpha, min_effect, min_size, penalty)
    np, ruptures, stats = _numpy()
    every = np.asarray(values, dtype=float)
    kept_at = np.flatnonzero(np.isfinite(every))[-MAX_POINTS:]
    found, _ = _detect(every[kept_at], alpha, min_effect, min_size, penalty, np, ruptures, stats)
    return _at(found, kept_at)


def _at(found: Detection, kept_at: Any) -> Detection:
    """A detection on the searched values, with indices of the whole series."""
    changes = [dataclasses.replace(c, index=int(kept_at[c.index])) for c in found.changes]
    return Detection(changes, [int(kept_at[i]) for i in found.outliers], found.scale)


def _detect(
    x: Any,
    alpha: float,
    min_effect: float,
    min_size: int,
    penalty: float,
    np: Any,
    ruptures: Any,
    stats: Any,
    *,
    known: Sequence[int] = (),
    start: int = 0,
) -> tuple[Detection, list[int]]:
    """The detection, and the candidates the search proposed (before the checks). ``known`` and ``start``
    (IncrementalDetector): the candidates an earlier search proposed before ``start``, taken instead of searching
    ``x[:start]`` again; every candidate is judged as in a full search."""
    n = len(x)
    if n < 2 * min_size:
        return Detection([], [], robust_scale(x) if n else 0.0), []
    scale = robust_scale(x)
    z = (x - np.median(x)) / scale
    candidates = list(known)
    if n - start >= 2 * min_size:
        search = ruptures.Pelt(model="l1", min_size=min_size, jump=1).fit(z[start:])
        candidates += [start + c for c in search.predict(pen=penalty * math.log(n))[:-1]]
    proposed = list(candidates)
    kept: list[_Judged] = []
    while True:
        judged = [_judge(z, scale, candidates, i, min_size, stats, np) for i in range(len(candidates))]
        failing = [(j.p_value, i) for i, j in enumerate(judged) if not _passes(j, alpha, min_effect)]
        if not failing:
            kept = judged
            break
        candidates = [c for i, c in enumerate(candidates) if i != max(failing)[1]]
    median = float(np.median(x))
    changes = [
        ChangePoint(c.index, c.before * scale + median, c.after * scale + median, scale, c.p_value) for c in kept
    ]
    return Detection(changes, _outliers(z, [c.index for c in kept], np), scale), proposed


@dataclass
class _Seen:
    length: int  # values (finite or not) the series had
    digest: bytes  # of those values: the series only grew when its first ``length`` values still hash to it
    proposed: list[int]  # the search's candidates (before the checks), as indices of the series' finite values
    detection: Detection
    settings: tuple[float, float, int, float]


class IncrementalDetector:
    """:func:`detect` for series that grow at their end (a bucket's points, newest last), as Otava computes its
    change points incrementally: when a series only grew since it was last seen, its search (PELT, the cost: it
    grows faster than the length) begins again at the newest cut it made at least :data:`TAIL` points before its
    previous end, the earlier cuts kept as candidates; every candidate is then judged exactly as :func:`detect`
    judges it, on the whole searched series. A series without such a cut, one that changed anywhere but at its
    end, or other settings: searched in full. The same series and settings give the same answer as the last time.

    The answer differs from a full search only when new points move the whole series' optimal partition before
    that cut (``benchmarks/changepoints.py`` runs both on every prefix of its corpus and prints how often).
    Thread-safe; remembers at most ``capacity`` series (least recently used first out)."""

    TAIL = 2 * _WINDOW

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[Hashable, _Seen] = OrderedDict()
        self._lock = threading.Lock()
        self.searched = 0  # values PELT searched, over all calls: what the incremental path saves

    def detect(
        self,
        key: Hashable,
        values: Sequence[float],
        *,
        alpha: float = ALPHA,
        min_effect: float = MIN_EFFECT,
        min_size: int = MIN_SIZE,
        penalty: float = PENALTY,
    ) -> Detection:
        _checked(alpha, min_effect, min_size, penalty)
        np, ruptures, stats = _numpy()
        every = np.asarray(values, dtype=float)
        settings = (alpha, min_effect, min_size, penalty)
        with self._lock:
            seen = self._seen.get(key)
        if seen is not None and (seen.settings != settings or seen.length > len(every)):
            seen = None
        if seen is not None and _digest(every[: seen.length]) != seen.digest:
            seen = None
        if seen is not None and seen.length == len(every):
            self._remember(key, seen)
            return seen.detection
        finite = np.flatnonzero(np.isfinite(every))
        offset = max(0, len(finite) - MAX_POINTS)  # the searched window's first finite value
        kept_at = finite[offset:]
        known: list[int] = []
        start = 0
        if seen is not None:
            # The previous end, in the window's indices; the old change points settled before it stay.
            previous_end = int(np.count_nonzero(np.isfinite(every[: seen.length]))) - offset
            cuts = [c - offset for c in seen.proposed]
            # Begin at the newest cut the last search made at least TAIL points before its end. Optimal
            # partitioning is additive: while that cut stays in the whole series' optimum, the search of the
            # points after it finds exactly what a search of the whole series would find there.
            anchors = [c for c in cuts if min_size <= c <= previous_end - self.TAIL]
            if anchors:
                start = anchors[-1]
                known = [c for c in cuts if min_size <= c <= start]
        self.searched += len(kept_at) - start
        found, proposed = _detect(every[kept_at], *settings, np, ruptures, stats, known=known, start=start)
        detection = _at(found, kept_at)
        self._remember(key, _Seen(len(every), _digest(every), [offset + c for c in proposed], detection, settings))
        return detection

    def _remember(self, key: Hashable, seen: _Seen) -> None:
        with self._lock:
            self._seen[key] = seen
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)


def _digest(values: Any) -> bytes:
    return hashlib.blake2b(values.tobytes(), digest_size=16).digest()


@dataclass(frozen=True)
class _Judged:
    index: int
    before: float  # in robust deviations, as z
    after: float
    p_value: float
    step_fits: bool


def _passes(judged: _Judged, alpha: float, min_effect: float) -> bool:
    return judged.p_value < alpha and abs(judged.after - judged.before) >= min_effect and judged.step_fits


def _judge(z: Any, scale: float, cuts: list[int], i: int, min_size: int, stats: Any, np: Any) -> _Judged:
    cut = cuts[i]
    start = max(cuts[i - 1] if i > 0 else 0, cut - _WINDOW)
    end = min(cuts[i + 1] if i + 1 < len(cuts) else len(z), cut + _WINDOW)
    left, right = z[start:cut], z[cut:end]
    before, after = float(np.median(left)), float(np.median(right))
    a = np.clip(left, before - CLIP, before + CLIP)
    b = np.clip(right, after - CLIP, after + CLIP)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        p_value = 0.0 if before != after else 1.0
    else:
        p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        if math.isnan(p_value):
            p_value = 1.0
    return _Judged(cut, before, after, p_value, _step_fits(np.concatenate([a, b]), len(a), np))


DRIFT_ALPHA = 1e-3
DRIFT_MIN_SIDE = 8  # fewer points on a side cannot tell a slope from a step: the level test alone decides


def _step_fits(window: Any, cut: int, np: Any) -> bool:
    """A level change at ``cut`` still shows once a straight line through the window is allowed for: least
    squares of the points on a constant, a slope and a step at ``cut``; the step's coefficient must differ from
    zero (two-sided p below DRIFT_ALPHA). A slow drift cut in two fails: the slope explains it."""
    _, _, stats = _numpy()
    n = len(window)
    if min(cut, n - cut) < DRIFT_MIN_SIDE:
        return True
    t = np.arange(n, dtype=float)
    design = np.column_stack([np.ones(n), t, (t >= cut).astype(float)])
    coef, _, rank, _ = np.linalg.lstsq(design, window, rcond=None)
    if rank < 3:
        return True
    residual = window - design @ coef
    dof = n - 3
    variance = float(residual @ residual) / dof
    if variance <= 0:
        return True
    covariance = variance * np.linalg.inv(design.T @ design)
    t_stat = float(coef[2]) / math.sqrt(float(covariance[2, 2]))
    return float(2 * stats.t.sf(abs(t_stat), dof)) < DRIFT_ALPHA


def _outliers(z: Any, cuts: list[int], np: Any) -> list[int]:
    """Points more than OUTLIER_K robust deviations from the median of their segment."""
    found: list[int] = []
    bounds = [0, *cuts, len(z)]
    for start, end in itertools.pairwise(bounds):
        segment = z[start:end]
        far = np.nonzero(np.abs(segment - np.median(segment)) > OUTLIER_K)[0]
        found.extend(int(start + i) for i in far)
    return found


def against_baseline(baseline: Sequence[float], new: Sequence[float], *, alpha: float = ALPHA) -> ChangePoint | None:
    """New points against the points before them (one level: no change point among them), as :func:`detect`
    judges the two sides of a change: Welch's t-test of the clipped points, or, for a single new point, how many
    of the baseline's robust deviations it lies from the baseline's median (normal tail). None: fewer than
    ``2 * MIN_SIZE`` baseline points, too few to judge."""
    np, _, stats = _numpy()
    if len(baseline) < 2 * MIN_SIZE or not new:
        return None
    base, fresh = np.asarray(baseline, dtype=float), np.asarray(new, dtype=float)
    scale = robust_scale(base)
    before, after = float(np.median(base)), float(np.median(fresh))
    clipped = np.clip(base, before - CLIP * scale, before + CLIP * scale)
    if len(fresh) == 1:
        spread = max(float(np.std(clipped, ddof=1)), scale)
        p_value = float(2 * stats.norm.sf(abs(after - before) / (spread * math.sqrt(1 + 1 / len(base)))))
    else:
        fresh = np.clip(fresh, after - CLIP * scale, after + CLIP * scale)
        p_value = float(stats.ttest_ind(clipped, fresh, equal_var=False).pvalue)
        if math.isnan(p_value):
            p_value = 0.0 if before != after else 1.0
    return ChangePoint(len(baseline), before, after, scale, p_value)
