"""One artifact: the jobs that produced and used it, its revisions (checksums over time), its annotations.

An artifact is known by its URI from the lineage edges that name it and from annotations on it; an annotation
on an artifact needs no job of its own (see ``JobFoldState.is_job``).
"""

from __future__ import annotations

from typing import Any

from jobprov.errors import UnknownNameError
from jobprov.query.store import Store, to_utc

_EDGE = "job_id, relation, time, checksum, size_bytes, role, step"


def artifact(store: Store, uri: str) -> dict[str, Any]:
    """``{uri, producers, consumers, revisions, annotations}``. Producers and consumers: one row per job edge
    (job, time, checksum, size, role, step), in time order. Revisions: each checksum the artifact was produced
    or used with, first and last seen, by how many jobs, in order of first sight. Raises
    :class:`UnknownNameError` when no edge and no annotation names the URI."""
    node = f"artifact:{uri}"
    edges = store.rows(
        f"SELECT {_EDGE} FROM {{db}}.lineage FINAL WHERE (dst = {{node:String}} AND relation = 'produced') "
        "OR (src = {node:String} AND relation = 'used') ORDER BY time, job_id",
        node=node,
    )
    annotations = store.rows(
        "SELECT key_name, value, author, time FROM {db}.annotations FINAL "
        "WHERE target_type = 'artifact' AND target = {uri:String} ORDER BY time, key_name",
        uri=uri,
    )
    if not edges and not annotations:
        raise UnknownNameError(f"no artifact {uri!r}: no job used or produced it and nothing annotates it")
    names = [c.strip() for c in _EDGE.split(",")]
    rows: list[dict[str, Any]] = [
        dict(zip(names, (to_utc(v) if hasattr(v, "tzinfo") else v for v in r), strict=True)) for r in edges
    ]
    revisions: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        seen = revisions.setdefault(
            row["checksum"], {"checksum": row["checksum"], "first_seen": row["time"], "jobs": set()}
        )
        seen["last_seen"] = row["time"]
        seen["jobs"].add(row["job_id"])
    return {
        "uri": uri,
        "producers": [{k: v for k, v in r.items() if k != "relation"} for r in rows if r["relation"] == "produced"],
        "consumers": [{k: v for k, v in r.items() if k != "relation"} for r in rows if r["relation"] == "used"],
        "revisions": [{**r, "jobs": len(r["jobs"])} for r in revisions.values()],
        "annotations": [
            {"key": key, "value": value, "author": author, "time": to_utc(time)}
            for key, value, author, time in annotations
        ],
    }
