"""CI identity captured by `jobprov run` and `jobprov.job()` inside a (simulated) GitHub Actions / GitLab build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobprov.schemas.models import ProvenanceDeclared
from tests.integration.conftest import Endpoint
from tests.integration.kafka_helpers import consume, events_of
from tests.unit.emitters.test_ci import GITHUB, GITLAB


def _env(tmp_path: Path, url: str, ci: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPROV_", "GITHUB_", "CI_", "BUILDKITE"))}
    env.pop("GITLAB_CI", None)
    env.pop("JENKINS_URL", None)
    env.update(ci, JOBPROV_URL=url, JOBPROV_SPOOL_DIR=str(tmp_path / "spool"), JOBPROV_CAPTURE_PACKAGES="0")
    return env


def _values(kafka: Endpoint, topic: str, expected: int) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for event in events_of(consume(kafka.bootstrap, topic, expected=expected)):
        if isinstance(event.payload, ProvenanceDeclared):
            merged.setdefault(event.job_id, {}).update(event.payload.values)
    return merged


def test_jobprov_run_records_the_github_build(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    env = _env(tmp_path, kafka.url(topic), GITHUB)
    done = subprocess.run(
        [sys.executable, "-m", "jobprov.cli.main", "run", "--job-id", "gh-1", "-p", "ci.job=mine", "--", "true"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    values = _values(kafka, topic, expected=4)["gh-1"]
    assert values["ci.system"] == "github-actions"
    assert (values["ci.run_id"], values["ci.attempt"], values["ci.commit"][:7]) == ("9876543210", "2", "5c1b8e2")
    assert values["ci.job"] == "mine", "a key the job declares wins over the captured one"
    assert GITHUB["GITHUB_TOKEN"] not in str(values)


def test_python_api_records_the_gitlab_build(kafka: Endpoint, topic: str, tmp_path: Path) -> None:
    code = "import jobprov\nwith jobprov.job(name='unit', job_id='gl-1'):\n    pass\n"
    env = _env(tmp_path, kafka.url(topic), GITLAB)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    values = _values(kafka, topic, expected=4)["gl-1"]
    assert {k: values[k] for k in ("ci.system", "ci.run_id", "ci.job", "ci.runner")} == {
        "ci.system": "gitlab-ci",
        "ci.run_id": "1050",
        "ci.job": "test:unit",
        "ci.runner": "shared-runner-3",
    }
    assert not any(secret in str(values) for secret in (GITLAB["CI_JOB_TOKEN"], GITLAB["CI_REGISTRY_PASSWORD"]))
