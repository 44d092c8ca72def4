"""Names a query refers to (metrics, provenance keys) checked against what the store holds, so a typo is an
error naming close matches instead of an empty answer.

A check runs only when an answer comes back empty: a name that matches costs nothing extra.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from jobprov.errors import QueryError, UnknownNameError
from jobprov.query.store import Store
from jobprov.stream_processors.provenance import namespace_of, qualified, split_name


def close_matches(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``name``: a difference of case first (``am1`` -> ``AM1``), then difflib's."""
    known = sorted(set(known))
    by_fold = {k.casefold(): k for k in known}
    if name.casefold() in by_fold:  # the same name in another case: surely that one
        return [by_fold[name.casefold()]]
    near = difflib.get_close_matches(name.casefold(), list(by_fold), n=limit, cutoff=0.6)
    return [by_fold[n] for n in near]


def unknown(what: str, name: str, known: Iterable[str], hint: str = "", prefer: Iterable[str] = ()) -> UnknownNameError:
    """The error for ``name`` that is not a known ``what``, with close matches (or the known ones, if few);
    ``prefer``: matches to name first (e.g. ``job.status`` for ``status``)."""
    known = sorted(set(known))
    matches = list(dict.fromkeys([*prefer, *close_matches(name, known)]))[:3]
    if matches:
        advice = "did you mean " + " or ".join(matches) + "?"
    elif not known:
        advice = f"there is no {what} yet"
    elif len(known) <= 10:
        advice = "known: " + ", ".join(known)
    else:
        advice = f"{len(known)} are known"
    return UnknownNameError(f"unknown {what} {name!r}: {advice}{hint}")


def metric_names(store: Store) -> list[str]:
    # metric leads the table's sort key: this reads one column's distinct values, no FINAL needed.
    return [r[0] for r in store.rows("SELECT DISTINCT metric FROM {db}.metric_points ORDER BY metric")]


def check_metric(store: Store, metric: str) -> None:
    """Raise :class:`UnknownNameError` when no point of ``metric`` was ever stored."""
    names = metric_names(store)
    if metric not in names:
        raise unknown("metric", metric, names, " (`jobprov query metrics` lists them)")


def provenance_keys(store: Store) -> list[str]:
    return [r[0] for r in store.rows("SELECT DISTINCT arrayJoin(mapKeys(values)) AS k FROM {db}.provenance ORDER BY k")]


def stored_key(name: str) -> str:
    """The stored provenance key a query's name refers to: ``param.<key>`` (a parameter), ``ctx.<key>`` (context:
    packages, git, config, datasets, environment), ``sys.<key>`` (collected by jobprov: host, os, kernel, python,
    container_image, machine, job.name, job.kind), or ``prov.<key>`` / a bare key (any namespace). A key named in
    the wrong namespace is an error naming the right one."""
    key, namespace = split_name(name)
    if not key:
        raise QueryError(f"{name!r}: no key after the namespace")
    if namespace is not None and namespace_of(key) != namespace:
        raise QueryError(
            f"{name!r}: {key!r} is {namespace_of(key)} provenance, not {namespace}: write {qualified(key)}"
        )
    return key


def stored_keys(names: Iterable[str]) -> list[str]:
    return [stored_key(n) for n in names]
