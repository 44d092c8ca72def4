"""`query job` and `query compare` show what matters and group the long tails (packages, environment)."""

from __future__ import annotations

from typing import Any

from jobprov.cli.views import attempt_rows, compare_rows, job_rows
from jobprov.query.plots import ringed

PACKAGES = {f"software.pkg{i:03d}": "1.0" for i in range(110)}


def detail(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job_id": "nightly-12", "name": "validate_drp", "kind": "ci", "status": "aborted", "attempts": 1,
        "attempt_statuses": {"1": "aborted"}, "started_at": "2026-09-21T14:13:20+00:00", "duration_ms": 1392,
        "wall_time_ms": 1392,
        "exit_code": 143, "signal": 15, "exception_type": None, "exception_message": None, "host": "vm",
        "cpu_user_s": None, "cpu_system_s": None, "peak_rss_bytes": 1871872, "anomalies": [],
        "provenance": {"dataset": "hsc", "software.numpy": "2.0.1", "env.PATH": "/bin", **PACKAGES},
        "steps": [], "annotations": [], "lineage": [], "resource_samples": {"count": 2},
    }  # fmt: skip
    return base | overrides


def test_a_job_shows_its_summary_and_groups_packages_and_environment() -> None:
    rows = {(r["section"], r["key"]): r["value"] for r in job_rows(detail())}
    assert rows[("job", "signal")] == "SIGTERM (15)"
    assert rows[("job", "wall time")] == "1.39 s"
    assert ("job", "last attempt") not in rows  # one attempt: its run time is the wall time
    assert rows[("job", "peak rss")] == "1.785 MiB"
    assert rows[("provenance", "dataset")] == "hsc"
    assert rows[("provenance", "software.*")].startswith("111 packages: numpy, pkg000")
    assert "--all lists them" in rows[("provenance", "software.*")]
    assert rows[("provenance", "env.*")].startswith("1 environment variable: PATH")
    assert not any(key.startswith("software.pkg") for _, key in rows)
    assert ("job", "exception") not in rows  # nothing to say, not said
    full = {(r["section"], r["key"]) for r in job_rows(detail(), show_all=True)}
    assert ("provenance", "software.pkg109") in full and ("job", "exception") in full


def test_a_retried_job_names_its_wall_time_and_each_attempts_outcome() -> None:
    failed = {"attempt": 1, "status": "failed", "superseded": True, "host": "nid001", "duration_ms": 5000,
              "exit_code": 1, "signal": None, "exception_type": "OSError", "exception_message": "disk full",
              "caveats": ["partial"]}  # fmt: skip
    ok = {"attempt": 2, "status": "succeeded", "superseded": False, "host": "nid002", "duration_ms": 2000,
          "exit_code": 0, "signal": None}  # fmt: skip
    job = detail(attempts=2, wall_time_ms=60_000, duration_ms=2000, attempt_details=[failed, ok])
    rows = {(r["section"], r["key"]): r["value"] for r in job_rows(job)}
    assert rows[("job", "wall time")] == "60 s" and rows[("job", "last attempt")] == "2 s"
    table = attempt_rows(job)
    assert [(r["attempt"], r["status"], r["host"], r["exit code"]) for r in table] == [
        (1, "failed (superseded)", "nid001", 1), (2, "succeeded", "nid002", 0)]  # fmt: skip
    assert table[0]["exception"] == "OSError: disk full" and table[0]["caveats"] == "partial"


def test_a_few_declared_packages_are_shown_one_by_one() -> None:
    rows = {(r["section"], r["key"]): r["value"] for r in job_rows(detail(provenance={"software.numpy": "2.0.1"}))}
    assert rows[("provenance", "software.numpy")] == "2.0.1"


def test_compare_keeps_version_changes_and_counts_one_sided_packages() -> None:
    changes = [{"key": "software.numpy", "before": "1.26.4", "after": "2.0.1"}]
    changes += [{"key": k, "before": v, "after": None} for k, v in PACKAGES.items()]
    changes += [{"key": "job.name", "before": "validate_drp", "after": "reduce"}]
    rows = compare_rows(changes, "a", "b")
    assert [r["key"] for r in rows] == ["software.numpy", "job.name", "software.*"]
    assert rows[-1]["a"] == "110 packages only here" and rows[-1]["b"].startswith("0 only here")
    assert len(compare_rows(changes, "a", "b", show_all=True)) == len(changes)


def test_the_plot_title_counts_regressions_as_the_table_does() -> None:
    assert ringed([{"onset": True}]) == "1 regression, 1 point outside the baseline ringed"
    many = [{"onset": True}, {"onset": False}, {"onset": True}, {"onset": False}]
    assert ringed(many) == "2 regressions, 4 points outside the baseline ringed"
