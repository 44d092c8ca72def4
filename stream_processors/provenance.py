"""Flattening provenance into the key/value pairs buckets and queries use, and the namespaces of those keys.

Keys: the declared values as they are (``dataset``, ``band``), ``datasets.<name>.version|checksum``,
``config.hash``, ``config.snapshot_uri``, ``software.<package>``, ``git.commit|branch|dirty|remote``,
``env.<NAME>``, and from the lifecycle ``host``, ``os``, ``kernel``, ``python``, ``container_image``,
``job.name``, ``job.kind``, ``machine``. A single declared dataset also sets ``dataset`` (and
``dataset.version``) unless the same declaration names ``dataset`` explicitly.
"""

from __future__ import annotations

from jobprov.schemas.models import JobStarted, JobSubmitted, ProvenanceDeclared

# The three namespaces of a job's flattened provenance. Collector-derived facts come from the lifecycle events
# (flatten_started, flatten_submitted); context describes the environment and inputs (packages, git, config,
# datasets, environment variables); every other declared value is a parameter: a program's invocation argument
# (`jobprov run -p band=r`, ``provenance={"band": "r"}``). Query names: ``param.<key>``, ``ctx.<key>``,
# ``sys.<key>``; the stored key is ``<key>`` in each, so a bare key and ``prov.<key>`` keep working.
COLLECTED = frozenset({"host", "os", "kernel", "python", "container_image", "job.name", "job.kind", "machine"})
CONTEXT_PREFIXES = ("software.", "git.", "config.", "datasets.", "env.", "dataset.version")
NAMESPACES = ("parameter", "context", "collected")
INPUT = "input"
"""What ``compare`` reports besides the three namespaces: an input artifact (same URI) used with another checksum."""
CHANGE_KINDS = (*NAMESPACES, INPUT)


def namespace_of(key: str) -> str:
    """``parameter``, ``context`` or ``collected``: which of the three a flattened provenance key belongs to."""
    if key in COLLECTED:
        return "collected"
    if key.startswith(CONTEXT_PREFIXES):
        return "context"
    return "parameter"


PREFIXES = {"param.": "parameter", "ctx.": "context", "sys.": "collected"}


def split_name(name: str) -> tuple[str, str | None]:
    """A provenance key as a query names it -> (the stored key, the namespace it was qualified with, or None):
    ``param.band`` -> (``band``, ``parameter``), ``ctx.software.numpy`` -> (``software.numpy``, ``context``),
    ``sys.host`` -> (``host``, ``collected``); ``prov.band`` and ``band`` -> (``band``, None)."""
    for prefix, namespace in PREFIXES.items():
        if name.startswith(prefix):
            return name.removeprefix(prefix), namespace
    return name.removeprefix("prov."), None


def qualified(key: str) -> str:
    """The stored key's full query name, in its namespace (``band`` -> ``param.band``)."""
    namespace = namespace_of(key)
    return next(prefix for prefix, ns in PREFIXES.items() if ns == namespace) + key


def parameters(values: dict[str, str]) -> dict[str, str]:
    """The parameters among a job's flattened provenance."""
    return {k: v for k, v in values.items() if namespace_of(k) == "parameter"}


def flatten_declared(p: ProvenanceDeclared) -> dict[str, str]:
    out: dict[str, str] = dict(p.values)
    for d in p.datasets:
        if d.version is not None:
            out[f"datasets.{d.name}.version"] = d.version
        if d.checksum is not None:
            out[f"datasets.{d.name}.checksum"] = d.checksum
    if len(p.datasets) == 1 and "dataset" not in p.values:
        out["dataset"] = p.datasets[0].name
        if p.datasets[0].version is not None:
            out["dataset.version"] = p.datasets[0].version
    if p.config is not None:
        out["config.hash"] = p.config.hash
        if p.config.snapshot_uri is not None:
            out["config.snapshot_uri"] = p.config.snapshot_uri
    for package, version in p.software.items():
        out[f"software.{package}"] = version
    if p.git is not None:
        out["git.commit"] = p.git.commit
        if p.git.branch is not None:
            out["git.branch"] = p.git.branch
        if p.git.dirty is not None:
            out["git.dirty"] = "true" if p.git.dirty else "false"
        if p.git.remote is not None:
            out["git.remote"] = p.git.remote
    for name, value in p.environment.items():
        out[f"env.{name}"] = value
    return out


def flatten_started(p: JobStarted) -> dict[str, str]:
    out = {"host": p.host, "os": p.os, "kernel": p.kernel}
    if p.python is not None:
        out["python"] = p.python
    if p.container_image is not None:
        out["container_image"] = p.container_image
    return out


def flatten_submitted(p: JobSubmitted) -> dict[str, str]:
    out = {"job.name": p.name, "job.kind": p.kind}
    if p.machine is not None:
        out["machine"] = p.machine
    return out
