"""Artifacts: the jobs that produced and used one, its revisions (checksums over time), its annotations; and
the artifacts an attribute query finds, each with the same.

An artifact is known by its URI from the lineage edges that name it and from annotations on it; an annotation
on an artifact needs no job of its own (see ``JobFoldState.is_job``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobprov.errors import UnknownNameError
from jobprov.query.attributes import find_artifacts
from jobprov.query.store import Store, to_utc

_EDGE = "job_id, relation, time, checksum, size_bytes, role, step"
_NAMES = [c.strip() for c in _EDGE.split(",")]
# An edge's artifact: the destination of a "produced" edge, the source of a "used" one (without "artifact:").
_URI = "substring(if(relation = 'produced', dst, src), 10)"
_EDGES = (
    f"SELECT {_URI}, {_EDGE} FROM {{db}}.lineage FINAL WHERE ((dst IN {{nodes:Array(String)}} AND relation = "
    "'produced') OR (src IN {nodes:Array(String)} AND relation = 'used')) ORDER BY time, job_id"
)
_ANNOTATIONS = (
    "SELECT target, key_name, value, author, time FROM {db}.annotations FINAL "
    "WHERE target_type = 'artifact' AND target IN {uris:Array(String)} ORDER BY time, key_name"
)


def artifact(store: Store, uri: str) -> dict[str, Any]:
    """``{uri, producers, consumers, revisions, annotations}``. Producers and consumers: one row per job edge
    (job, time, checksum, size, role, step), in time order. Revisions: each checksum the artifact was produced
    or used with, first and last seen, by how many jobs, in order of first sight. Raises
    :class:`UnknownNameError` when no edge and no annotation names the URI."""
    found = _documents(store, [uri])
    if not found:
        raise UnknownNameError(f"no artifact {uri!r}: no job used or produced it and nothing annotates it")
    return found[0]


def search(store: Store, query: Sequence[str], limit: int = 1000) -> list[dict[str, Any]]:
    """The artifacts matching every group of ``query`` (the attribute language:
    :func:`jobprov.query.attributes.find_artifacts`), in URI order, each as :func:`artifact` documents it, with
    every annotation: two queries for all of them, whatever their number (at most ``limit``)."""
    return _documents(store, find_artifacts(store, query, limit))


def _documents(store: Store, uris: Sequence[str]) -> list[dict[str, Any]]:
    """The documents of ``uris`` known by an edge or an annotation, in the order given."""
    if not uris:
        return []
    edges: dict[str, list[dict[str, Any]]] = {}
    for uri, *values in store.rows(_EDGES, nodes=[f"artifact:{u}" for u in uris]):
        edges.setdefault(uri, []).append(
            dict(zip(_NAMES, (to_utc(v) if hasattr(v, "tzinfo") else v for v in values), strict=True))
        )
    annotations: dict[str, list[dict[str, Any]]] = {}
    for target, key, value, author, time in store.rows(_ANNOTATIONS, uris=list(uris)):
        annotations.setdefault(target, []).append({"key": key, "value": value, "author": author, "time": to_utc(time)})
    return [_document(u, edges.get(u, []), annotations.get(u, [])) for u in uris if u in edges or u in annotations]


def _document(uri: str, rows: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
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
        "annotations": annotations,
    }
