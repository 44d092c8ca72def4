"""What `jobprov query job` and `jobprov query compare` show a person by default: what matters, with the long
tails (installed packages, environment variables) grouped into one row each; ``--all`` shows every row and
``--format json`` the whole document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobprov.stream_processors.provenance import namespace_of

# Provenance key prefixes captured wholesale (every installed package, allow-listed environment variables):
# dozens of rows that rarely matter to the question asked, so they are grouped unless --all.
GROUPED = {"software.": "package", "env.": "environment variable"}
SHOWN_INLINE = 5  # a group this small is shown row by row anyway
SIGNALS = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL", 15: "SIGTERM", 24: "SIGXCPU"}

_SUMMARY = (
    ("job_id", "job id"), ("name", "name"), ("kind", "kind"), ("status", "status"), ("attempts", "attempts"),
    ("submitted_at", "submitted"), ("started_at", "started"), ("finished_at", "finished"),
    ("wall_time_ms", "wall time"), ("duration_ms", "last attempt"), ("exit_code", "exit code"), ("signal", "signal"),
    ("exception", "exception"),
    ("host", "host"), ("cpu_s", "cpu"), ("peak_rss_bytes", "peak rss"), ("parent_job_id", "parent"),
    ("workflow_id", "workflow"), ("dag_node", "dag node"), ("submitter", "submitter"), ("anomalies", "anomalies"),
    ("event_count", "events"),
)  # fmt: skip


def _count(n: int, prefix: str) -> str:
    return f"{n} {GROUPED[prefix]}" + ("" if n == 1 else "s")


def _group_of(key: str) -> str | None:
    return next((prefix for prefix in GROUPED if key.startswith(prefix)), None)


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _summary_value(detail: Mapping[str, Any], field: str) -> Any:
    if field == "attempts":
        statuses = detail.get("attempt_statuses") or {}
        return f"{detail.get('attempts')} ({', '.join(f'{n}: {s}' for n, s in sorted(statuses.items()))})"
    if field in ("duration_ms", "wall_time_ms"):
        if field == "duration_ms" and (detail.get("attempts") or 1) == 1:
            return None  # one attempt: its run time is the wall time
        return None if detail.get(field) is None else _duration(int(detail[field]))
    if field == "signal":
        number = detail.get("signal")
        return None if number is None else f"{SIGNALS.get(number, 'signal')} ({number})"
    if field == "exception":
        return ": ".join(str(v) for v in (detail.get("exception_type"), detail.get("exception_message")) if v) or None
    if field == "cpu_s":
        used = [v for v in (detail.get("cpu_user_s"), detail.get("cpu_system_s")) if v is not None]
        return f"{sum(used):.3g} s" if used else None
    if field == "peak_rss_bytes":
        rss = detail.get("peak_rss_bytes")
        return None if rss is None else f"{rss / 1048576:.4g} MiB"
    if field == "anomalies":
        return "; ".join(detail.get("anomalies") or []) or None
    return detail.get(field)


def _provenance_rows(provenance: Mapping[str, str], show_all: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {prefix: [] for prefix in GROUPED}
    for key in sorted(provenance):
        prefix = _group_of(key)
        if prefix is None or show_all:
            rows.append({"section": "provenance", "key": key, "value": provenance[key]})
        else:
            groups[prefix].append(key)
    for prefix, keys in groups.items():
        if 0 < len(keys) <= SHOWN_INLINE and prefix != "env.":
            rows += [{"section": "provenance", "key": k, "value": provenance[k]} for k in keys]
        elif keys:
            names = ", ".join(k.removeprefix(prefix) for k in keys[:SHOWN_INLINE])
            more = f", … {len(keys) - SHOWN_INLINE} more" if len(keys) > SHOWN_INLINE else ""
            rows.append({"section": "provenance", "key": f"{prefix}*",
                         "value": f"{_count(len(keys), prefix)}: {names}{more} (--all lists them)"})  # fmt: skip
    return rows


def job_rows(detail: Mapping[str, Any], show_all: bool = False) -> list[dict[str, Any]]:
    """One job as rows of (section, key, value): its summary, provenance, steps, annotations and lineage."""
    rows: list[dict[str, Any]] = []
    for field, name in _SUMMARY:
        value = _summary_value(detail, field)
        if value not in (None, "", []) or show_all:
            rows.append({"section": "job", "key": name, "value": value})
    rows += _provenance_rows(detail.get("provenance") or {}, show_all)
    for s in detail.get("steps") or []:
        ended = f" {s['exception_type']}" if s.get("exception_type") else ""
        rows.append({"section": "steps", "key": f"{s['attempt']}/{s['name']}",
                     "value": f"{s['status']}{ended} ({s['started_at']} → {s['finished_at']})"})  # fmt: skip
    for a in detail.get("annotations") or []:
        rows.append({"section": "annotations", "key": a["key_name"], "value": f"{a['value']} (by {a['author']})"})
    for e in detail.get("lineage") or []:
        rows.append({"section": "lineage", "key": e["relation"], "value": f"{e['src']} → {e['dst']}"})
    samples = detail.get("resource_samples") or {}
    if samples.get("count"):
        rows.append({"section": "resources", "key": "samples", "value": samples["count"]})
    return rows


def attempt_rows(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A job's attempts as a table: each attempt's own outcome, where and when it ran, its run time and
    resources (``superseded``: a later attempt exists)."""
    rows = []
    for a in detail.get("attempt_details") or []:
        cpu = [v for v in (a.get("cpu_user_s"), a.get("cpu_system_s")) if v is not None]
        signal = a.get("signal")
        rows.append({
            "attempt": a["attempt"], "status": a["status"] + (" (superseded)" if a.get("superseded") else ""),
            "host": a.get("host"), "submitted": a.get("submitted_at"), "started": a.get("started_at"),
            "finished": a.get("finished_at"),
            "duration": None if a.get("duration_ms") is None else _duration(int(a["duration_ms"])),
            "exit code": a.get("exit_code"),
            "signal": None if signal is None else f"{SIGNALS.get(signal, 'signal')} ({signal})",
            "exception": ": ".join(str(v) for v in (a.get("exception_type"), a.get("exception_message")) if v),
            "cpu": f"{sum(cpu):.3g} s" if cpu else None,
            "peak rss": None if a.get("peak_rss_bytes") is None else f"{a['peak_rss_bytes'] / 1048576:.4g} MiB",
            "caveats": "; ".join(a.get("caveats") or []),
        })  # fmt: skip
    return rows


def _artifact_cell(entries: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(e["uri"] + (f" ({str(e['checksum'])[:12]})" if e.get("checksum") else "") for e in entries)


def artifact_rows(found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One artifact as rows of (section, key, value): producers, consumers, revisions, annotations."""
    rows: list[dict[str, Any]] = []
    for section in ("producers", "consumers"):
        for e in found.get(section) or []:
            checksum = f" checksum {e['checksum']}" if e.get("checksum") else ""
            rows.append({"section": section, "key": e["job_id"], "value": f"{e['time']}{checksum}"})
    for r in found.get("revisions") or []:
        rows.append({"section": "revisions", "key": r["checksum"] or "(no checksum)",
                     "value": f"{r['first_seen']} → {r['last_seen']} ({r['jobs']} jobs)"})  # fmt: skip
    for a in found.get("annotations") or []:
        rows.append({"section": "annotations", "key": a["key"], "value": f"{a['value']} (by {a['author']})"})
    return rows


def found_artifact_rows(found: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Artifacts an attribute search found, one row each: URI, checksums, producers, consumers, annotations (each
    list joined by "; ": ids and values may hold commas and spaces)."""
    return [
        {"uri": a["uri"],
         "checksums": "; ".join(sorted({r["checksum"] for r in a["revisions"] if r["checksum"]})),
         "producers": "; ".join(sorted({e["job_id"] for e in a["producers"]})),
         "consumers": "; ".join(sorted({e["job_id"] for e in a["consumers"]})),
         "annotations": "; ".join(f"{n['key']}={n['value']}" for n in a["annotations"])}
        for a in found
    ]  # fmt: skip


def member_rows(members: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A run's members, one row each: place, program, status, parameters, inputs and outputs (with checksums)."""
    return [
        {"place": m["place"], "program": m["program"], "status": m["status"], "job_id": m["job_id"],
         "parameters": ",".join(f"{k}={v}" for k, v in sorted(m["parameters"].items())),
         "inputs": _artifact_cell(m["inputs"]), "outputs": _artifact_cell(m["outputs"])}
        for m in members
    ]  # fmt: skip


def _namespace(change: Mapping[str, Any]) -> str:
    return str(change.get("namespace") or namespace_of(change["key"]))


def compare_rows(
    changes: Sequence[Mapping[str, Any]], job_a: str, job_b: str, show_all: bool = False
) -> list[dict[str, Any]]:
    """Provenance differences between two jobs. Unless ``show_all``: a package whose version changed is shown
    (that is what explains a regression); packages present in one job only are counted in one row."""
    rows: list[dict[str, Any]] = []
    only: dict[str, list[int]] = {}  # prefix -> [only in a, only in b]
    for c in changes:
        prefix = _group_of(c["key"])
        one_sided = c["before"] is None or c["after"] is None
        if prefix is not None and one_sided and not show_all:
            counts = only.setdefault(prefix, [0, 0])
            counts[0 if c["after"] is None else 1] += 1
            continue
        rows.append({"namespace": _namespace(c), "key": c["key"], job_a: c["before"], job_b: c["after"]})
    for prefix, (in_a, in_b) in only.items():
        if in_a + in_b <= SHOWN_INLINE:  # few: show them after all
            rows += [{"namespace": _namespace(c), "key": c["key"], job_a: c["before"], job_b: c["after"]}
                     for c in changes
                     if _group_of(c["key"]) == prefix and (c["before"] is None or c["after"] is None)]  # fmt: skip
            continue
        rows.append({"namespace": namespace_of(prefix), "key": f"{prefix}*", job_a: f"{_count(in_a, prefix)} only here",
                     job_b: f"{in_b} only here (--all lists them)"})  # fmt: skip
    return rows
