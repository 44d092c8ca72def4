"""The label (key values) and unit of each bucket of a metric, from the small ``buckets`` table.

The sink writes a bucket's row the first time it sees the bucket (and migration 2 copied in the buckets stored
before), so labels cost a lookup in a table of one row per bucket instead of a scan of the bucket's points. A
bucket id is a fingerprint of its key values, so any row of a bucket labels it.

A bucket missing from the table (its points written by other means than the sink, or swapped in by a replay
from a database whose ``buckets`` stayed behind) is labelled from one of its points instead: slower, never
wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobprov.query.store import Store

Label = tuple[dict[str, str], str | None]  # (key values, unit)


def bucket_labels(store: Store, metric: str, buckets: Sequence[str]) -> dict[str, Label]:
    """Key values and unit of each of ``buckets`` of ``metric`` (a bucket without points is left out)."""
    if not buckets:
        return {}
    found: dict[str, Label] = {
        bucket: (dict(keys), unit)
        for bucket, keys, unit in store.rows(
            "SELECT bucket, keys, unit FROM {db}.buckets FINAL "
            "WHERE metric = {metric:String} AND bucket IN {buckets:Array(String)}",
            metric=metric,
            buckets=list(buckets),
        )
    }
    missing = [b for b in buckets if b not in found]
    if missing:
        # Delete rows carry the keys of the bucket their point moved to, not of this one: leave them out.
        for bucket, keys, unit in store.rows(
            "SELECT bucket, bucket_keys, unit FROM {db}.metric_points "
            "WHERE metric = {metric:String} AND bucket IN {buckets:Array(String)} AND is_deleted = 0 "
            "LIMIT 1 BY bucket",
            metric=metric,
            buckets=missing,
        ):
            found[bucket] = (dict(keys), unit)
    return found
