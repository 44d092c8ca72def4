"""Regressions as change points with the metric's policy, and `jobprov check` for CI gating, on the real engine
(the campaign of test_queries: a numpy upgrade moves AM1 on hsc up by 1.5 from night UPGRADE on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.errors import QueryError
from jobprov.query.series import check, regressions
from jobprov.query.store import Store
from jobprov.stream_processors.comparability import load_registry
from tests.integration.conftest import _CHDB_STORE
from tests.integration.test_queries import NIGHTS, UPGRADE, job_id, loaded  # noqa: F401 - the fixture


def _registry(tmp_path: Path, policy: str) -> Any:
    path = tmp_path / "registry.toml"
    path.write_text(f'default_keys = ["dataset", "band", "config.hash"]\n[metrics.AM1]\n{policy}\n')
    return path


def test_a_change_point_names_its_size_direction_and_the_jobs_either_side(loaded: Store) -> None:  # noqa: F811
    found = regressions(loaded, "AM1")
    assert sorted((r.label["band"], r.first_bad_job) for r in found) == [
        ("all", job_id(UPGRADE, "hsc", "all")),
        ("r", job_id(UPGRADE, "hsc", "r")),
    ]
    for r in found:
        assert r.method == "changepoint" and r.onset and r.direction == "regression"  # "either": any change
        assert r.size == pytest.approx(1.5, abs=0.1) and r.relative_size == pytest.approx(0.15, abs=0.01)
        assert r.confidence is not None and r.confidence > 0.999
        assert r.last_good_job == job_id(UPGRADE - 1, "hsc", r.label["band"]) == r.previous_job
        assert [str(c) for c in r.changes] == ["software.numpy: 1.26.4 → 2.0.1"]
    # The earlier rule is still there, by name.
    rolling = regressions(loaded, "AM1", method="rolling_median", window=6, min_points=4)
    assert {r.first_bad_job for r in rolling if r.onset} == {r.first_bad_job for r in found}
    with pytest.raises(QueryError, match="method"):
        regressions(loaded, "AM1", method="magic")


def test_the_policy_decides_regression_or_improvement_and_what_is_too_small(loaded: Store, tmp_path: Path) -> None:  # noqa: F811
    higher = load_registry(_registry(tmp_path, 'direction = "higher_is_better"'))
    assert {r.direction for r in regressions(loaded, "AM1", registry=higher)} == {"improvement"}
    lower = load_registry(_registry(tmp_path, 'direction = "lower_is_better"'))
    assert {r.direction for r in regressions(loaded, "AM1", registry=lower)} == {"regression"}
    small = load_registry(_registry(tmp_path, "min_relative_change = 0.2"))  # the move is 15%
    assert regressions(loaded, "AM1", registry=small) == []
    absolute = load_registry(_registry(tmp_path, "min_absolute_change = 1.0"))
    assert len(regressions(loaded, "AM1", registry=absolute)) == 2


def test_check_judges_a_job_against_its_buckets_level(loaded: Store) -> None:  # noqa: F811
    (first_bad,) = check(loaded, job_id(UPGRADE, "hsc", "r"))
    assert first_bad.verdict == "regression" and first_bad.baseline_points == UPGRADE
    assert first_bad.size == pytest.approx(1.5, abs=0.1)
    (plain,) = check(loaded, job_id(UPGRADE, "cfht", "r"))
    assert plain.verdict == "unchanged"
    (early,) = check(loaded, job_id(2, "hsc", "r"))
    assert early.verdict == "no baseline"


def test_check_through_the_cli_exits_non_zero_on_a_regression(loaded: Store, tmp_path: Path) -> None:  # noqa: F811
    env = {"JOBPROV_PROCESSOR_CLICKHOUSE_DATABASE": loaded.database}
    store = ["--store", f"chdb://{_CHDB_STORE[0]}"]
    runner = CliRunner()

    bad = runner.invoke(cli, ["check", job_id(UPGRADE, "hsc", "all"), *store], env=env)
    assert bad.exit_code == 1, bad.output
    assert "regression" in bad.output and job_id(UPGRADE, "hsc", "all") in bad.output

    good = runner.invoke(cli, ["check", job_id(UPGRADE, "cfht", "all"), *store, "--format", "json"], env=env)
    assert good.exit_code == 0, good.output
    assert [v["verdict"] for v in json.loads(good.output)] == ["unchanged"]

    # The same upgrade is an improvement when higher is better: no failure.
    registry = _registry(tmp_path, 'direction = "higher_is_better"')
    better = runner.invoke(
        cli,
        ["check", job_id(UPGRADE, "hsc", "all"), *store],
        env={**env, "JOBPROV_PROCESSOR_COMPARABILITY_REGISTRY": str(registry)},
    )
    assert better.exit_code == 0 and "improvement" in better.output, better.output

    # A bucket: its newest job (night NIGHTS - 1, on the new level for NIGHTS - UPGRADE points: too few to judge).
    (hsc_r,) = [r for r in regressions(loaded, "AM1") if r.label["band"] == "r"]
    newest = runner.invoke(cli, ["check", "--bucket", hsc_r.bucket, "--metric", "AM1", *store], env=env)
    assert newest.exit_code == 0 and job_id(NIGHTS - 1, "hsc", "r") in newest.output, newest.output
    assert "no baseline" in newest.output

    assert runner.invoke(cli, ["check", *store], env=env).exit_code == 2
    unknown = runner.invoke(cli, ["check", "no-such-job", *store], env=env)
    assert unknown.exit_code == 2 and "no-such-job" in unknown.output
