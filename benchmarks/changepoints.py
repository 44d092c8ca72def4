"""Change-point detection on a labelled corpus: jobprov's detector against the current rule and references.

The corpus (generated from a seed, so every run sees the same arrays) holds series with no change under
gaussian, heavy-tailed (Student t, 2 degrees of freedom), outlier-laden, slowly drifting, bimodal and
variance-changing noise; steps of 1-10 sigma up and down (under gaussian, heavy-tailed and outlier-laden noise);
two steps; a step and its revert; short series. Every detector sees the same arrays in the same run:

- ``rolling rule``: the current rule (``jobprov.query.series.rolling_outliers``, its defaults), one detection per
  onset (the first point of a run of outliers);
- ``jobprov``: ``jobprov.query.changepoints.detect`` with its defaults;
- ``ruptures PELT l2`` and ``ruptures Binseg l2``: the references, least-squares cost, penalty 2·s²·log(n) with
  s the same robust noise estimate (the BIC-like penalty the ruptures documentation suggests);
- ``ruptures PELT l1``: PELT on the robust cost alone, i.e. jobprov's candidates before its checks;
- ``e-divisive``: signal-processing-algorithms (MongoDB) or apache-otava, when importable (neither installs
  beside numpy 2 on Python 3.11: the run says so and goes on without it).

A detection within ``--tolerance`` points of a true change is a true positive (each true change matched once);
any other is a false alarm. Detection delay: the number of points after a change the detector needs to report
it, run on growing prefixes of the series (median over the changes found).

Incremental: every series is also seen as a bucket receives it, one point at a time (each prefix from 6 points),
by ``detect`` in full and by ``IncrementalDetector`` (which searches again only what the new points can change);
the run prints how many prefixes the two answer differently and the time each takes. Prints figures; asserts
nothing.

    python benchmarks/changepoints.py [--seed 1] [--tolerance 5] [--no-delay] [--no-incremental]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import ruptures

from jobprov.query.changepoints import MIN_SIZE, IncrementalDetector, detect, robust_scale
from jobprov.query.series import rolling_outliers


@dataclass
class Series:
    kind: str
    values: list[float]
    changes: list[int] = field(default_factory=list)  # index of the first point of each new level


def corpus(seed: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    out: list[Series] = []

    def noise(n: int, kind: str) -> np.ndarray:
        if kind == "heavy-tailed":
            return rng.standard_t(2, n)
        if kind == "outliers":
            x = rng.normal(0, 1, n)
            spots = rng.choice(n, size=3, replace=False)
            x[spots] += rng.choice([-1, 1], 3) * rng.uniform(6, 15, 3)
            return x
        return rng.normal(0, 1, n)

    def length() -> int:
        return int(rng.integers(80, 161))

    level = 100.0
    for _ in range(4):  # no change at all
        for kind in ("gaussian", "heavy-tailed", "outliers"):
            out.append(Series(f"none/{kind}", list(level + noise(length(), kind))))
        n = length()
        out.append(Series("none/drift", list(level + noise(n, "gaussian") + np.linspace(0, rng.uniform(3, 5), n))))
        modes = rng.choice([-1.5, 1.5], n)
        out.append(Series("none/bimodal", list(level + modes + rng.normal(0, 0.5, n))))
        n = length()
        x = noise(n, "gaussian")
        x[n // 2 :] *= rng.uniform(2.5, 4)
        out.append(Series("none/variance", list(level + x)))
    for sigmas in (1, 2, 3, 5, 10):  # steps, up and down
        for sign in (1, -1):
            n = length()
            at = int(rng.integers(n // 3, 2 * n // 3))
            x = level + noise(n, "gaussian")
            x[at:] += sign * sigmas
            out.append(Series(f"step/{sigmas}sd", list(x), [at]))
    for kind in ("heavy-tailed", "outliers"):
        for sigmas in (3, 5):
            n = length()
            at = int(rng.integers(n // 3, 2 * n // 3))
            x = level + noise(n, kind)
            x[at:] += rng.choice([-1, 1]) * sigmas
            out.append(Series(f"step/{kind}", list(x), [at]))
    for _ in range(4):  # two steps
        n = length()
        first, second = int(n * rng.uniform(0.25, 0.4)), int(n * rng.uniform(0.6, 0.75))
        x = level + noise(n, "gaussian")
        x[first:] += rng.choice([-1, 1]) * rng.uniform(3, 6)
        x[second:] += rng.choice([-1, 1]) * rng.uniform(3, 6)
        out.append(Series("two steps", list(x), [first, second]))
    for _ in range(4):  # a step, then back
        n = length()
        at, back = int(n * rng.uniform(0.3, 0.5)), 0
        back = at + int(rng.integers(10, 30))
        x = level + noise(n, "gaussian")
        x[at:back] += rng.choice([-1, 1]) * rng.uniform(3, 6)
        out.append(Series("step and revert", list(x), [at, back]))
    for _ in range(3):  # short series: a nightly job's first two weeks
        n = int(rng.integers(10, 17))
        at = n - int(rng.integers(4, 6))
        x = level + noise(n, "gaussian")
        x[at:] += rng.choice([-1, 1]) * rng.uniform(5, 8)
        out.append(Series("short/step", list(x), [at]))
        out.append(Series("short/none", list(level + noise(int(rng.integers(10, 17)), "gaussian"))))
    return out


Detector = Callable[[list[float]], list[int]]


def rolling_rule(values: list[float]) -> list[int]:
    return [o.index for o in rolling_outliers(values) if o.onset]


def jobprov(values: list[float]) -> list[int]:
    return [c.index for c in detect(values).changes]


def _ruptures(algo: type, model: str, penalty: Callable[[list[float]], float]) -> Detector:
    def run(values: list[float]) -> list[int]:
        if len(values) < 6:
            return []
        x = np.asarray(values, dtype=float)
        return list(algo(model=model, min_size=3, jump=1).fit(x).predict(pen=penalty(values))[:-1])

    return run


def _bic(values: list[float]) -> float:
    return 2.0 * robust_scale(values) ** 2 * math.log(len(values))


def _l1_penalty(values: list[float]) -> float:
    return 3.0 * robust_scale(values) * math.log(len(values))


def e_divisive() -> tuple[Detector | None, str]:
    """MongoDB's e-divisive if it imports here (it needs numpy < 2), else the reason."""
    try:
        from signal_processing_algorithms.energy_statistics import energy_statistics  # type: ignore[import-not-found]
    except ImportError as exc:
        try:
            import otava  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            return None, f"e-divisive skipped: signal-processing-algorithms / apache-otava not importable ({exc})"
        return None, "e-divisive skipped: apache-otava imports but its analysis API is not wired here"

    def run(values: list[float]) -> list[int]:
        found = energy_statistics.e_divisive(np.asarray(values, dtype=float), pvalue=0.05, permutations=100)
        return sorted(int(c) for c in found)

    return run, ""


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    points: int = 0
    none_alarms: int = 0
    delays: list[int] = field(default_factory=list)
    seconds: float = 0.0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [tp, fp, fn]

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def match(found: list[int], truth: list[int], tolerance: int) -> tuple[int, int, int, list[int]]:
    """True positives, false alarms, misses, and the true changes matched."""
    unmatched = sorted(found)
    matched = []
    for t in truth:
        near = [f for f in unmatched if abs(f - t) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda f: abs(f - t)))
            matched.append(t)
    return len(matched), len(unmatched), len(truth) - len(matched), matched


def delay(detector: Detector, values: list[float], change: int, tolerance: int) -> int | None:
    """Points after ``change`` needed before the detector, run on the prefix, reports it (None: never)."""
    for end in range(change + 1, len(values) + 1):
        if any(abs(f - change) <= tolerance for f in detector(values[:end])):
            return end - 1 - change
    return None


def evaluate(detector: Detector, series: list[Series], tolerance: int, delays: bool) -> Score:
    score = Score()
    started = time.perf_counter()
    for s in series:
        found = detector(s.values)
        tp, fp, fn, matched = match(found, s.changes, tolerance)
        score.tp, score.fp, score.fn = score.tp + tp, score.fp + fp, score.fn + fn
        score.points += len(s.values)
        if not s.changes:
            score.none_alarms += fp
        counts = score.by_kind.setdefault(s.kind, [0, 0, 0])
        counts[0], counts[1], counts[2] = counts[0] + tp, counts[1] + fp, counts[2] + fn
    score.seconds = time.perf_counter() - started
    if delays:
        for s in series:
            _, _, _, matched = match(detector(s.values), s.changes, tolerance)
            for change in matched:
                d = delay(detector, s.values, change, tolerance)
                if d is not None:
                    score.delays.append(d)
    return score


def incremental(series: list[Series]) -> tuple[int, int, float, float, int, int]:
    """Every prefix of every series (a bucket receiving its points one by one) through ``detect`` and through one
    ``IncrementalDetector``: (prefixes, prefixes answered differently, seconds full, seconds incremental, values
    searched by the incremental one, values searched in full)."""
    prefixes = differ = searched_full = 0
    full_s = incremental_s = 0.0
    detector = IncrementalDetector()
    for number, s in enumerate(series):
        for end in range(2 * MIN_SIZE, len(s.values) + 1):
            prefix = s.values[:end]
            t0 = time.perf_counter()
            whole = [c.index for c in detect(prefix).changes]
            t1 = time.perf_counter()
            grown = [c.index for c in detector.detect(number, prefix).changes]
            t2 = time.perf_counter()
            full_s, incremental_s = full_s + t1 - t0, incremental_s + t2 - t1
            prefixes, differ, searched_full = prefixes + 1, differ + (whole != grown), searched_full + end
    return prefixes, differ, full_s, incremental_s, detector.searched, searched_full


def long_bucket(seed: int) -> tuple[float, float, bool]:
    """A bucket of years of nightly points (1,000, steps at 300 and 700) receiving its last 100 one by one:
    (seconds full, seconds incremental, same answers)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 1.0, 1000)
    values[300:] += 3.0
    values[700:] -= 2.0
    detector = IncrementalDetector()
    detector.detect("long", list(values[:900]))
    full_s = incremental_s = 0.0
    same = True
    for end in range(901, 1001):
        prefix = list(values[:end])
        t0 = time.perf_counter()
        whole = detect(prefix)
        t1 = time.perf_counter()
        grown = detector.detect("long", prefix)
        t2 = time.perf_counter()
        full_s, incremental_s, same = full_s + t1 - t0, incremental_s + t2 - t1, same and whole == grown
    return full_s, incremental_s, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tolerance", type=int, default=5, help="points between a detection and its change")
    parser.add_argument("--no-delay", action="store_true", help="skip the detection delays (the slow part)")
    parser.add_argument("--by-kind", action="store_true", help="true positives, false alarms, misses per kind")
    parser.add_argument("--no-incremental", action="store_true", help="skip the incremental comparison")
    args = parser.parse_args()

    series = corpus(args.seed)
    points = sum(len(s.values) for s in series)
    changes = sum(len(s.changes) for s in series)
    empty = sum(1 for s in series if not s.changes)
    print(f"corpus (seed {args.seed}): {len(series)} series, {points} points, {changes} true changes, "
          f"{empty} series with none; tolerance ±{args.tolerance} points")  # fmt: skip
    detectors: dict[str, Detector] = {
        "rolling rule (current)": rolling_rule,
        "jobprov": jobprov,
        "ruptures PELT l2": _ruptures(ruptures.Pelt, "l2", _bic),
        "ruptures Binseg l2": _ruptures(ruptures.Binseg, "l2", _bic),
        "ruptures PELT l1": _ruptures(ruptures.Pelt, "l1", _l1_penalty),
    }
    edivisive, note = e_divisive()
    if edivisive is None:
        print(note)
    else:
        detectors["e-divisive (MongoDB)"] = edivisive
    header = f"{'detector':<24} {'precision':>9} {'recall':>6} {'F1':>5} {'FA/1000':>7} {'none-FA':>7} "
    print(header + f"{'delay p50':>9} {'delay max':>9} {'seconds':>7}")
    scores = {}
    for name, detector in detectors.items():
        s = evaluate(detector, series, args.tolerance, not args.no_delay)
        scores[name] = s
        p50 = f"{statistics.median(s.delays):.0f}" if s.delays else "-"
        worst = f"{max(s.delays)}" if s.delays else "-"
        print(f"{name:<24} {s.precision:>9.2f} {s.recall:>6.2f} {s.f1:>5.2f} {1000 * s.fp / s.points:>7.1f} "
              f"{s.none_alarms:>7} {p50:>9} {worst:>9} {s.seconds:>7.2f}")  # fmt: skip
    best = max((n for n in scores if n not in ("jobprov", "rolling rule (current)")), key=lambda n: scores[n].f1)
    ours = scores["jobprov"]
    print(f"jobprov F1 / best reference ({best}) F1: {ours.f1 / scores[best].f1:.2f}; "
          f"jobprov F1 / rolling rule F1: {ours.f1 / max(scores['rolling rule (current)'].f1, 1e-9):.2f}")  # fmt: skip
    if not args.no_incremental:
        prefixes, differ, full_s, incremental_s, searched, searched_full = incremental(series)
        print(f"incremental, every prefix of every series ({prefixes:,}): answered differently {differ} "
              f"({differ / prefixes:.2%}); full {full_s:.1f} s, incremental {incremental_s:.1f} s "
              f"({full_s / incremental_s:.1f}x); values searched {searched:,} vs {searched_full:,}")  # fmt: skip
        full_s, incremental_s, same = long_bucket(args.seed)
        answers = "the same answers" if same else "different answers"
        print(f"a 1,000-point bucket receiving its last 100 points: full {full_s:.1f} s, incremental "
              f"{incremental_s:.2f} s ({full_s / incremental_s:.0f}x), {answers}")  # fmt: skip
    if args.by_kind:
        for name, s in scores.items():
            print(f"\n{name}: kind tp/fa/miss")
            for kind, (tp, fp, fn) in sorted(s.by_kind.items()):
                print(f"  {kind:<20} {tp}/{fp}/{fn}")


if __name__ == "__main__":
    main()
