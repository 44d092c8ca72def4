"""Comparability: which provenance keys make two values of a metric "like" each other.

A registry (TOML) declares the keys per metric name, with defaults. A metric point's bucket is a stable
fingerprint of those keys and their values, so every point in one bucket is comparable; every other recorded
key stays queryable, to say what changed between two points of the same bucket. The registry has a version
(a digest of its content, plus an optional label); every metric point records the version it was bucketed
with, and a replay with a new registry recomputes the buckets.

Example::

    label = "2026-11"
    default_keys = ["dataset", "band", "config.hash"]

    [metrics.AM1]
    keys = ["dataset", "band"]
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from jobprov.errors import ConfigError

DEFAULT_KEYS = ("dataset", "band", "config.hash")


@dataclass(frozen=True)
class ComparabilityRegistry:
    default_keys: tuple[str, ...] = DEFAULT_KEYS
    metrics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    label: str = ""

    @cached_property
    def version(self) -> str:
        content = json.dumps(
            {"default": list(self.default_keys), "metrics": {k: list(v) for k, v in sorted(self.metrics.items())}},
            sort_keys=True,
        )
        digest = hashlib.blake2b(content.encode(), digest_size=6).hexdigest()
        return f"{self.label}:{digest}" if self.label else digest

    def keys_for(self, metric: str) -> tuple[str, ...]:
        return self.metrics.get(metric, self.default_keys)


def load_registry(path: str | Path) -> ComparabilityRegistry:
    """Read a registry file; unknown tables or keys are rejected with their names."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError("comparability_registry", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("comparability_registry", f"{path} is not valid TOML: {exc}") from exc
    unknown = set(document) - {"label", "default_keys", "metrics"}
    if unknown:
        raise ConfigError(f"{path} {sorted(unknown)[0]}", "unknown key")
    metrics: dict[str, tuple[str, ...]] = {}
    tables = document.get("metrics", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path} metrics", "expected tables: [metrics.NAME] keys = [...]")
    for name, table in tables.items():
        if not isinstance(table, dict) or set(table) != {"keys"}:
            raise ConfigError(f"{path} [metrics.{name}]", "expected exactly one entry: keys = [...]")
        metrics[name] = _keys(table["keys"], f"{path} [metrics.{name}] keys")
    default = _keys(document.get("default_keys", list(DEFAULT_KEYS)), f"{path} default_keys")
    return ComparabilityRegistry(default, metrics, str(document.get("label", "")))


def _keys(raw: object, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(k, str) and k for k in raw):
        raise ConfigError(where, "expected a list of key names")
    return tuple(raw)


def bucket_keys(keys: Iterable[str], provenance: Mapping[str, str]) -> dict[str, str]:
    """The comparability keys with their values; a key the job did not record has the value ''."""
    return {k: provenance.get(k, "") for k in sorted(set(keys))}


def bucket_for(
    keys: Iterable[str], provenance: Mapping[str, str], tags: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """A metric point's bucket keys and bucket: its job's provenance refined by the point's own tags. The one rule
    the fold uses to bucket a point and the sinks use to move stored points after late provenance."""
    chosen = bucket_keys(keys, {**provenance, **tags} if tags else provenance)
    return chosen, fingerprint(chosen)


def fingerprint(pairs: Mapping[str, str]) -> str:
    """Stable across processes and versions: a digest of the sorted key/value pairs."""
    content = json.dumps(sorted(pairs.items()), separators=(",", ":"))
    return hashlib.blake2b(content.encode(), digest_size=8).hexdigest()


def bucket_of(
    metric: str,
    provenance: Mapping[str, str],
    keys: Iterable[str] | None = None,
    registry: ComparabilityRegistry | None = None,
) -> str:
    """The bucket of a metric value computed with this provenance (explicit ``keys`` override the registry)."""
    chosen = tuple(keys) if keys is not None else (registry or ComparabilityRegistry()).keys_for(metric)
    return fingerprint(bucket_keys(chosen, provenance))
