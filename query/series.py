"""Regression series, bucket lookup and baselines, and what changed between runs.

- :func:`series`: a metric over time, one line per provenance bucket or per chosen provenance keys, with a
  time window, provenance filters, and jobs annotated as bad left out.
- :func:`which_bucket` / :func:`baseline`: the bucket a (metric, provenance) belongs to and its statistics.
- :func:`compare_jobs`: the provenance keys whose values differ between two jobs, inside the bucket or not.
- :func:`regressions`: per bucket, where its level changed (:mod:`jobprov.query.changepoints`, the default) or
  points outside a rolling robust baseline (median ± k·MAD of the previous points: ``method="rolling_median"``),
  each with its size, direction (regression or improvement, by the metric's policy in the comparability
  registry), the last good and first bad job and what changed between them.
- :func:`check`: whether a job's points are a regression against their bucket's current level (CI gating).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import QueryError, UnknownNameError
from jobprov.query.buckets import bucket_labels
from jobprov.query.changepoints import IncrementalDetector
from jobprov.query.limits import ROWS
from jobprov.query.lines import Line, Point
from jobprov.query.names import check_metric, stored_key
from jobprov.query.store import Store, to_utc
from jobprov.stream_processors.comparability import (
    METHODS,
    ComparabilityRegistry,
    MetricPolicy,
    bucket_keys,
    fingerprint,
)
from jobprov.stream_processors.provenance import CHANGE_KINDS, INPUT, namespace_of

_MAX_KEYS = 8


def _check_keys(keys: Sequence[str], what: str) -> None:
    if len(keys) > _MAX_KEYS:
        raise QueryError(f"{what}: at most {_MAX_KEYS} keys")
    for key in keys:
        if not key or len(key) > 200:
            raise QueryError(f"{what}: bad key {key!r}")


def _filters(filters: Mapping[str, str], exclude: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """SQL conditions on the job's provenance and annotations, with their parameters."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if filters:
        _check_keys(list(filters), "filter")
        parts = []
        for i, (key, value) in enumerate(sorted(filters.items())):
            parts.append(f"values[{{fk{i}:String}}] = {{fv{i}:String}}")
            params[f"fk{i}"], params[f"fv{i}"] = stored_key(key), value
        clauses.append(f"m.job_id IN (SELECT job_id FROM {{db}}.provenance FINAL WHERE {' AND '.join(parts)})")
    for i, (key, value) in enumerate(sorted(exclude.items())):
        clauses.append(
            "m.job_id NOT IN (SELECT target FROM {db}.annotations FINAL WHERE target_type = 'job' "
            f"AND key_name = {{xk{i}:String}} AND value = {{xv{i}:String}})"
        )
        params[f"xk{i}"], params[f"xv{i}"] = key, value
    return "".join(f" AND {c}" for c in clauses), params


def series(
    store: Store,
    metric: str,
    *,
    group_by: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    filters: Mapping[str, str] | None = None,
    exclude_annotated: Mapping[str, str] | None = None,
    bucket: str | None = None,
) -> list[Line]:
    """The metric's points, one line per bucket (default) or per combination of ``group_by`` keys."""
    if not metric:
        raise QueryError("metric: required")
    where, params = _filters(filters or {}, exclude_annotated or {})
    params.update(metric=metric)
    if since is not None:
        where += " AND m.time >= {since:DateTime64(3, 'UTC')}"
        params["since"] = since
    if until is not None:
        where += " AND m.time < {until:DateTime64(3, 'UTC')}"
        params["until"] = until
    if bucket is not None:
        where += " AND m.bucket = {bucket:String}"
        params["bucket"] = bucket
    if group_by:
        lines = _series_by_keys(store, list(group_by), where, params)
    else:
        lines = _series_by_bucket(store, metric, where, params)
    if not lines:  # nothing matched: a metric that does not exist is an error, not an empty series
        check_metric(store, metric)
    return lines


# Sorting the selected rows beats reading them in key order here: with FINAL, reading in order merges the
# part's ranges stream by stream, about twice the time of one sort (for one bucket and for a whole metric).
_SORTED = " SETTINGS optimize_read_in_order = 0"


def _series_by_bucket(store: Store, metric: str, where: str, params: dict[str, Any]) -> list[Line]:
    """The points column-wise, ordered by bucket then time, cut into a line per bucket's run of rows; then the
    labels of the buckets found (a lookup in the small ``buckets`` table)."""
    one = params.get("bucket")
    # The bucket column only when several buckets can come (as LowCardinality: its text decoded once per bucket).
    bucket_sql = "" if one is not None else "toLowCardinality(m.bucket), "
    columns = store.columns(
        f"SELECT {bucket_sql}toUnixTimestamp64Milli(m.time), m.value, m.job_id, m.event_id "
        f"FROM {{db}}.metric_points AS m FINAL WHERE m.metric = {{metric:String}}{where} "
        f"ORDER BY m.bucket, m.time, m.job_id{_SORTED}",
        **params,
    )
    if not columns:
        return []
    if one is not None:
        millis, values, job_ids, event_ids = columns
        keys, unit = bucket_labels(store, metric, [one]).get(one, ({}, None))
        return [Line(keys, one, unit, millis, values, job_ids, event_ids)]
    buckets, millis, values, job_ids, event_ids = columns
    runs: list[tuple[str, int, int]] = []
    start = 0
    while start < len(buckets):
        end = bisect.bisect_right(buckets, buckets[start], lo=start)  # rows come ordered by bucket
        runs.append((buckets[start], start, end))
        start = end
    labels = bucket_labels(store, metric, [bucket_id for bucket_id, _, _ in runs])
    lines = []
    for bucket_id, start, end in runs:
        keys, unit = labels.get(bucket_id, ({}, None))
        cut = slice(start, end)
        lines.append(Line(keys, bucket_id, unit, millis[cut], values[cut], job_ids[cut], event_ids[cut]))
    return lines


def _series_by_keys(store: Store, group_by: list[str], where: str, params: dict[str, Any]) -> list[Line]:
    """The points with the chosen provenance keys of their job, a line per combination of their values."""
    _check_keys(group_by, "group_by")
    label_sql = ", ".join(f"p.values[{{g{i}:String}}]" for i in range(len(group_by)))
    params.update({f"g{i}": stored_key(key) for i, key in enumerate(group_by)})  # labelled as asked
    columns = store.columns(
        f"SELECT [{label_sql}] AS label, m.unit, toUnixTimestamp64Milli(m.time), m.value, m.job_id, m.event_id "
        "FROM {db}.metric_points AS m FINAL "
        "INNER JOIN (SELECT job_id, values FROM {db}.provenance FINAL) AS p ON p.job_id = m.job_id "
        f"WHERE m.metric = {{metric:String}}{where} ORDER BY label, m.time, m.job_id",
        **params,
    )
    if not columns:
        return []
    labels, units, millis, values, job_ids, event_ids = columns
    lines = []
    start = 0
    for end in range(1, len(labels) + 1):
        if end == len(labels) or labels[end] != labels[start]:  # rows come ordered by label
            cut = slice(start, end)
            label = dict(zip(group_by, labels[start], strict=True))
            lines.append(Line(label, None, units[start], millis[cut], values[cut], job_ids[cut], event_ids[cut]))
            start = end
    return lines


def which_bucket(
    metric: str,
    provenance: Mapping[str, str],
    registry: ComparabilityRegistry | None = None,
    keys: Sequence[str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The bucket id and its key values for a metric computed with this provenance (no store needed)."""
    registry = registry or ComparabilityRegistry()
    chosen = bucket_keys(keys if keys is not None else registry.keys_for(metric), provenance)
    return fingerprint(chosen), chosen


@dataclass
class Baseline:
    metric: str
    bucket: str
    count: int
    mean: float | None
    median: float | None
    mad: float | None
    stdev: float | None
    minimum: float | None
    maximum: float | None
    last_time: datetime | None
    before: datetime | None = None
    """Only points strictly before this time (None: every point)."""
    as_of_job: str | None = None
    """The job ``before`` was taken from (its first point of the metric), if one was named."""
    statistic: str = ""
    """What the numbers are, in words: which points, and that ``median`` and ``mad`` are the level and spread."""


def as_of(store: Store, metric: str, bucket: str, ref: str) -> tuple[datetime, str | None]:
    """The time a baseline "as of ``ref``" ends at (exclusive), and the job, if ``ref`` names one: a job's
    first point of the metric in this bucket (else in any bucket; else its start or submission), or an ISO 8601
    time. A job id is looked up first, so an id that reads as a time still means the job."""
    row = store.rows(
        "SELECT (SELECT minOrNull(time) FROM {db}.metric_points FINAL WHERE job_id = {ref:String} "
        "AND metric = {metric:String} AND bucket = {bucket:String}), "
        "(SELECT minOrNull(time) FROM {db}.metric_points FINAL WHERE job_id = {ref:String} "
        "AND metric = {metric:String}), "
        "(SELECT anyOrNull(coalesce(started_at, submitted_at)) FROM {db}.jobs FINAL WHERE job_id = {ref:String}), "
        "(SELECT count() FROM {db}.jobs FINAL WHERE job_id = {ref:String})",
        ref=ref,
        metric=metric,
        bucket=bucket,
    )[0]
    in_bucket, in_metric, started, known = row
    if known or in_metric is not None:
        found = to_utc(next((t for t in (in_bucket, in_metric, started) if t is not None), None))
        if found is None:
            raise QueryError(f"as_of: job {ref!r} has neither a point of {metric!r} nor a start time")
        return found, ref
    try:
        time = datetime.fromisoformat(ref.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UnknownNameError(f"as_of: {ref!r} is neither a job id nor an ISO 8601 time") from exc
    return (time if time.tzinfo else time.replace(tzinfo=UTC)), None


def baseline(
    store: Store,
    metric: str,
    bucket: str,
    last: int = 50,
    *,
    before: datetime | None = None,
    as_of_job: str | None = None,
    exclude_annotated: Mapping[str, str] | None = None,
) -> Baseline:
    """Statistics of the bucket's last ``last`` points (strictly ``before`` a time, when given), leaving out jobs
    annotated with any of ``exclude_annotated`` (as the series does): the median is the level, the MAD (median
    absolute deviation) the spread the regression rules use, with mean, stdev, min and max besides."""
    ROWS.check("last", last)
    where, params = _filters({}, exclude_annotated or {})
    if before is not None:
        where += " AND m.time < {before:DateTime64(3, 'UTC')}"
        params["before"] = before
    rows = store.rows(
        "SELECT m.value, m.time FROM {db}.metric_points AS m FINAL WHERE m.metric = {metric:String} "
        f"AND m.bucket = {{bucket:String}}{where} ORDER BY m.time DESC LIMIT {{last:UInt32}}",
        metric=metric,
        bucket=bucket,
        last=last,
        **params,
    )
    values = [float(r[0]) for r in rows]
    words = f"median (level) and MAD (spread) of the last {last} points"
    if before is not None:
        words += f" before {before.isoformat()}" + (f" (job {as_of_job}'s first point)" if as_of_job else "")
    if exclude_annotated:
        words += ", leaving out jobs annotated " + ", ".join(f"{k}={v}" for k, v in sorted(exclude_annotated.items()))
    words += f": {len(values)} found"
    if not values:
        check_metric(store, metric)
        return Baseline(metric, bucket, 0, None, None, None, None, None, None, None, before, as_of_job, words)
    median = statistics.median(values)
    return Baseline(
        metric,
        bucket,
        len(values),
        statistics.fmean(values),
        median,
        statistics.median(abs(v - median) for v in values),
        statistics.stdev(values) if len(values) > 1 else 0.0,
        min(values),
        max(values),
        to_utc(rows[0][1]),
        before,
        as_of_job,
        words,
    )


@dataclass
class Change:
    key: str
    before: str | None
    after: str | None
    in_bucket: bool
    namespace: str = ""
    """parameter, context or collected (``stream_processors.provenance.namespace_of``), or input: the key is then
    ``input:<uri>`` and the values the checksums the two jobs used it with."""

    def __post_init__(self) -> None:
        self.namespace = self.namespace or namespace_of(self.key)

    def __str__(self) -> str:
        return f"{self.key}: {self.before} → {self.after}"


def describe_changes(changes: Sequence[Mapping[str, Any]]) -> str:
    """Changes as documents (a Change's fields) in one line, as :class:`Change` prints them; "" for none."""
    return "; ".join(str(Change(c["key"], c["before"], c["after"], c.get("in_bucket", False))) for c in changes)


def _provenance(store: Store, job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    rows = store.rows(
        "SELECT job_id, values FROM {db}.provenance FINAL WHERE job_id IN {ids:Array(String)}", ids=list(job_ids)
    )
    return {r[0]: dict(r[1]) for r in rows}


def compare_jobs(
    store: Store,
    job_a: str,
    job_b: str,
    bucket_key_names: Sequence[str] = (),
    ignore: Sequence[str] = ("env.",),
    namespace: str | None = None,
) -> list[Change]:
    """Provenance keys whose values differ between two jobs, each with its namespace, then the input artifacts
    both used with different checksums (namespace ``input``, key ``input:<uri>``). ``ignore``: key prefixes left
    out; ``namespace``: only changes of this kind (parameter, context, collected or input)."""
    if namespace is not None and namespace not in CHANGE_KINDS:
        raise QueryError(f"namespace: one of {', '.join(CHANGE_KINDS)}, not {namespace!r}")
    found = _provenance(store, [job_a, job_b])
    for job in (job_a, job_b):
        if job not in found:
            raise QueryError(f"no provenance for job {job!r}")
    a, b = found[job_a], found[job_b]
    changes = []
    for key in sorted(set(a) | set(b)):
        if any(key.startswith(prefix) for prefix in ignore):
            continue
        if namespace is not None and namespace_of(key) != namespace:
            continue
        if a.get(key) != b.get(key):
            changes.append(Change(key, a.get(key), b.get(key), key in bucket_key_names))
    if namespace in (None, INPUT):
        used = _inputs(store, [job_a, job_b])
        inputs_a, inputs_b = used.get(job_a, {}), used.get(job_b, {})
        for uri in sorted(set(inputs_a) & set(inputs_b)):
            if inputs_a[uri] != inputs_b[uri]:
                changes.append(Change(f"input:{uri}", inputs_a[uri], inputs_b[uri], False, INPUT))
    return changes


def _inputs(store: Store, job_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """Per job, each artifact it used and the checksum it used it with (the latest, if it used it twice)."""
    rows = store.rows(
        "SELECT job_id, substring(src, 10), argMax(checksum, time) FROM {db}.lineage FINAL "
        "WHERE relation = 'used' AND job_id IN {ids:Array(String)} AND startsWith(src, 'artifact:') "
        "GROUP BY job_id, src",
        ids=list(job_ids),
    )
    out: dict[str, dict[str, str | None]] = {}
    for job, uri, checksum in rows:
        out.setdefault(job, {})[uri] = checksum
    return out


@dataclass
class Regression:
    metric: str
    bucket: str
    label: dict[str, str]
    point: Point
    median: float
    mad: float
    deviation: float  # in robust standard deviations (1.4826 MAD)
    previous_job: str
    changes: list[Change]
    onset: bool  # the first point of a run of outliers (always, for a change point): where the change started
    method: str = "rolling_median"
    size: float = 0.0  # the new level (or the point) minus the level before, in the metric's unit
    relative_size: float | None = None  # size / |level before| (None when that level is 0)
    direction: str = "regression"  # or "improvement", by the metric's policy
    confidence: float | None = None  # 1 - p-value of the change (None for the rolling rule)
    last_good_job: str = ""
    first_bad_job: str = ""


@dataclass(frozen=True)
class Outlier:
    """A point of a series outside the rolling robust baseline of the points before it."""

    index: int
    median: float
    mad: float
    deviation: float  # in robust standard deviations (1.4826 MAD)
    onset: bool  # the first point of a run of outliers


def rolling_outliers(
    values: Sequence[float], *, window: int = 10, k: float = 4.0, min_points: int = 10, scale_window: int | None = None
) -> list[Outlier]:
    """Points further than ``k`` robust deviations from the median of the previous ``window`` points.

    The deviation's scale (1.4826 MAD) comes from the previous ``scale_window`` points (default: the larger of
    ``window`` and 30): the MAD of a handful of points is often tiny by chance, and would flag plain noise."""
    if window < 2 or min_points < 2 or k <= 0:
        raise QueryError("window and min_points must be >= 2, k > 0")
    spread = max(window, 30) if scale_window is None else scale_window
    if spread < window:
        raise QueryError(f"scale_window ({spread}) must be >= window ({window})")
    found: list[Outlier] = []
    flagged_previous = False
    for i in range(min_points, len(values)):
        median = statistics.median(values[max(0, i - window) : i])
        recent = values[max(0, i - spread) : i]
        centre = statistics.median(recent)
        mad = statistics.median(abs(v - centre) for v in recent)
        scale = 1.4826 * mad if mad > 0 else max(abs(median) * 1e-3, 1e-12)
        deviation = (values[i] - median) / scale
        flagged = abs(deviation) > k
        if flagged:
            found.append(Outlier(i, median, mad, deviation, onset=not flagged_previous))
        flagged_previous = flagged
    return found


def _policy(metric: str, registry: ComparabilityRegistry | None, method: str | None) -> MetricPolicy:
    policy = (registry or ComparabilityRegistry()).policy_for(metric)
    if method is None:
        return policy
    if method not in METHODS:
        raise QueryError(f"method: one of {', '.join(METHODS)}")
    return dataclasses.replace(policy, method=method)


def _regression(
    store: Store,
    metric: str,
    line: Line,
    policy: MetricPolicy,
    index: int,
    before: float,
    mad: float,
    deviation: float,
    **extra: Any,
) -> Regression | None:
    """The change at ``index`` of ``line`` as a regression or an improvement; None when it is too small to
    matter by the policy."""
    size = line.values[index] - before if "size" not in extra else extra.pop("size")
    if not policy.matters(before, size):
        return None
    job_ids = line.job_ids
    return Regression(
        metric,
        line.bucket or "",
        line.label,
        line.point(index),
        before,
        mad,
        deviation,
        job_ids[index - 1],
        compare_jobs(store, job_ids[index - 1], job_ids[index], list(line.label)),
        size=size,
        relative_size=size / abs(before) if before else None,
        direction="regression" if policy.worse(size) else "improvement",
        last_good_job=job_ids[index - 1],
        first_bad_job=job_ids[index],
        method=policy.method,
        **extra,
    )


def regressions(
    store: Store,
    metric: str,
    *,
    method: str | None = None,
    window: int = 10,
    k: float = 4.0,
    min_points: int = 10,
    scale_window: int | None = None,
    since: datetime | None = None,
    exclude_annotated: Mapping[str, str] | None = None,
    registry: ComparabilityRegistry | None = None,
    bucket: str | None = None,
) -> list[Regression]:
    """Per bucket (or only ``bucket``), where the level changed (the metric's policy's method, by default change
    points; ``method`` overrides it), each with its size and direction and what changed between the last good and
    first bad job.

    ``rolling_median``: points further than ``k`` robust deviations from the median of the previous ``window``
    points of their bucket (:func:`rolling_outliers`); ``window``, ``k``, ``min_points`` and ``scale_window``
    apply to it only. Changes smaller than the policy's minimum are left out."""
    policy = _policy(metric, registry, method)
    rolling_outliers([], window=window, k=k, min_points=min_points, scale_window=scale_window)  # checks arguments
    found: list[Regression] = []
    for line in series(store, metric, since=since, exclude_annotated=exclude_annotated, bucket=bucket):
        found += line_regressions(
            store, metric, line, policy, window=window, k=k, min_points=min_points, scale_window=scale_window
        )
    return found


# One per process: the alert scan and the API ask about the same buckets as they grow, so each search begins where
# the last one settled (query/changepoints.py). numpy and ruptures load on its first search.
_DETECTOR = IncrementalDetector()


def line_regressions(
    store: Store,
    metric: str,
    line: Line,
    policy: MetricPolicy,
    *,
    window: int = 10,
    k: float = 4.0,
    min_points: int = 10,
    scale_window: int | None = None,
) -> list[Regression]:
    """The changes of one line (a bucket's series) by ``policy``: what :func:`regressions` reports for it, and what
    the alert scan (``query/alerts.py``) raises alerts for. The one implementation of the rule."""
    found: list[Regression] = []
    if policy.method == "rolling_median":
        for o in rolling_outliers(line.values, window=window, k=k, min_points=min_points, scale_window=scale_window):
            r = _regression(store, metric, line, policy, o.index, o.median, o.mad, o.deviation, onset=o.onset)
            if r is not None:
                found.append(r)
        return found
    key = (metric, line.bucket, tuple(sorted(line.label.items())))
    detection = _DETECTOR.detect(key, line.values, alpha=policy.sensitivity)
    start = 0
    for c in detection.changes:
        before = [v for v in line.values[start : c.index] if math.isfinite(v)]
        mad = statistics.median(abs(v - c.before) for v in before) if before else 0.0
        r = _regression(
            store, metric, line, policy, c.index, c.before, mad, c.deviations,
            onset=True, size=c.size, confidence=c.confidence,
        )  # fmt: skip
        if r is not None:
            found.append(r)
        start = c.index
    return found


@dataclass
class Verdict:
    """A job's points of one metric in one bucket, against the bucket's level before them."""

    metric: str
    bucket: str
    label: dict[str, str]
    job_id: str
    values: list[float]
    baseline_points: int
    baseline: float | None  # the median of the bucket's current level before the job
    size: float | None
    confidence: float | None
    verdict: str  # "regression", "improvement", "unchanged", "no baseline"


def check(
    store: Store,
    job_id: str | None = None,
    *,
    metric: str | None = None,
    bucket: str | None = None,
    registry: ComparabilityRegistry | None = None,
) -> list[Verdict]:
    """Each metric point of ``job_id`` (or of the newest job of ``bucket``'s ``metric``) against the points of
    its bucket before it, since the bucket's last change point: a regression when the difference is significant
    (the policy's sensitivity), at least its minimum, and the worse way."""
    from jobprov.query.changepoints import against_baseline, detect

    if (job_id is None) == (bucket is None):
        raise QueryError("name a job, or a bucket and its metric")
    if bucket is not None:
        if not metric:
            raise QueryError("--bucket needs --metric")
        targets = [(metric, bucket)]
    else:
        rows = store.rows(
            "SELECT DISTINCT metric, bucket FROM {db}.metric_points FINAL WHERE job_id = {job:String} "
            "ORDER BY metric, bucket",
            job=job_id,
        )
        if not rows:
            raise UnknownNameError(f"no metric points for job {job_id!r}")
        targets = [(str(r[0]), str(r[1])) for r in rows if metric is None or r[0] == metric]
    verdicts = []
    for name, bucket_id in targets:
        registry_policy = (registry or ComparabilityRegistry()).policy_for(name)
        (line,) = series(store, name, bucket=bucket_id) or [Line({}, bucket_id, None)]
        job = job_id if job_id is not None else (line.job_ids[-1] if len(line) else "")
        mine = [i for i, j in enumerate(line.job_ids) if j == job]
        if not mine:
            raise UnknownNameError(f"no points of {name} in bucket {bucket_id}")
        history = line.values[: mine[0]]
        values = [line.values[i] for i in mine]
        changes = detect(history, alpha=registry_policy.sensitivity).changes
        current = history[changes[-1].index :] if changes else history
        judged = against_baseline(current, values, alpha=registry_policy.sensitivity)
        if judged is None:
            verdicts.append(
                Verdict(name, bucket_id, line.label, job, values, len(current), None, None, None, "no baseline")
            )
            continue
        significant = judged.p_value < registry_policy.sensitivity and registry_policy.matters(
            judged.before, judged.size
        )
        verdict = "unchanged"
        if significant:
            verdict = "regression" if registry_policy.worse(judged.size) else "improvement"
        verdicts.append(
            Verdict(name, bucket_id, line.label, job, values, len(current), judged.before, judged.size,
                    judged.confidence, verdict)
        )  # fmt: skip
    return verdicts


@dataclass
class MetricSummary:
    metric: str
    unit: str | None
    points: int
    buckets: int
    last_time: datetime | None


def metric_names(store: Store) -> list[MetricSummary]:
    """Every metric with points, for pickers: its unit, how many points and buckets, its newest point."""
    rows = store.rows(
        "SELECT metric, any(unit), count(), uniqExact(bucket), max(time) FROM {db}.metric_points FINAL "
        "GROUP BY metric ORDER BY metric"
    )
    return [MetricSummary(r[0], r[1], int(r[2]), int(r[3]), to_utc(r[4])) for r in rows]
