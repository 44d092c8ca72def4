"""CI identity from the variables each system documents: one key scheme for all, tokens never read."""

from __future__ import annotations

import pytest

from jobprov.emitters.ci import SYSTEMS, ci_identity

GITHUB = {
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_NUMBER": "412",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW": "nightly validation",
    "GITHUB_JOB": "validate_drp",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": "5c1b8e2f9d3a4b6c7e8f90a1b2c3d4e5f6a7b8c9",
    "GITHUB_REPOSITORY": "lab/pipeline",
    "GITHUB_SERVER_URL": "https://github.com",
    "RUNNER_NAME": "GitHub Actions 17",
    "GITHUB_TOKEN": "ghs_abcdefghijklmnopqrstuvwxyz0123456789",
}
GITLAB = {
    "CI": "true",
    "GITLAB_CI": "true",
    "CI_PIPELINE_ID": "1050",
    "CI_PIPELINE_IID": "88",
    "CI_PIPELINE_NAME": "nightly",
    "CI_JOB_NAME": "test:unit",
    "CI_JOB_ID": "50021",
    "CI_COMMIT_REF_NAME": "main",
    "CI_COMMIT_SHA": "1ecfd275763eff1d6b4844ea3168962458c9f27a",
    "CI_PROJECT_PATH": "lab/pipeline",
    "CI_RUNNER_DESCRIPTION": "shared-runner-3",
    "CI_JOB_URL": "https://gitlab.example.com/lab/pipeline/-/jobs/50021",
    "CI_JOB_TOKEN": "glcbt-64_secretvalue123456",
    "CI_REGISTRY_PASSWORD": "registrypassword123",
}
JENKINS = {
    "JENKINS_URL": "https://ci.example.org/",
    "BUILD_TAG": "jenkins-pipeline-main-57",
    "BUILD_NUMBER": "57",
    "BUILD_ID": "57",
    "JOB_NAME": "pipeline/main",
    "STAGE_NAME": "Test",
    "BRANCH_NAME": "main",
    "GIT_COMMIT": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
    "GIT_URL": "https://jenkins-bot:p4ssw0rd-xyz@git.example.org/lab/pipeline.git",
    "NODE_NAME": "agent-linux-2",
    "BUILD_URL": "https://ci.example.org/job/pipeline/job/main/57/",
}
BUILDKITE = {
    "CI": "true",
    "BUILDKITE": "true",
    "BUILDKITE_BUILD_ID": "f62a1b4d-10f9-4790-bc1c-e2c3a0c80983",
    "BUILDKITE_BUILD_NUMBER": "1514",
    "BUILDKITE_RETRY_COUNT": "1",
    "BUILDKITE_PIPELINE_SLUG": "nightly",
    "BUILDKITE_LABEL": ":pytest: tests",
    "BUILDKITE_JOB_ID": "e44f9784-e20e-4b93-a21d-f41fd5869db9",
    "BUILDKITE_BRANCH": "main",
    "BUILDKITE_COMMIT": "83a20ec058e2fb00e7fa4558c4c6e81e2dcf253d",
    "BUILDKITE_REPO": "git@github.com:lab/pipeline.git",
    "BUILDKITE_AGENT_NAME": "agent-7-1",
    "BUILDKITE_BUILD_URL": "https://buildkite.com/lab/nightly/builds/1514",
    "BUILDKITE_AGENT_ACCESS_TOKEN": "bkua_0123456789abcdef0123456789",
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            GITHUB,
            {
                "ci.system": "github-actions",
                "ci.run_id": "9876543210",
                "ci.run_number": "412",
                "ci.attempt": "2",
                "ci.workflow": "nightly validation",
                "ci.job": "validate_drp",
                "ci.ref": "refs/heads/main",
                "ci.commit": "5c1b8e2f9d3a4b6c7e8f90a1b2c3d4e5f6a7b8c9",
                "ci.repository": "lab/pipeline",
                "ci.runner": "GitHub Actions 17",
                "ci.url": "https://github.com/lab/pipeline/actions/runs/9876543210",
            },
        ),
        (
            GITLAB,
            {
                "ci.system": "gitlab-ci",
                "ci.run_id": "1050",
                "ci.run_number": "88",
                "ci.workflow": "nightly",
                "ci.job": "test:unit",
                "ci.job_id": "50021",
                "ci.ref": "main",
                "ci.commit": "1ecfd275763eff1d6b4844ea3168962458c9f27a",
                "ci.repository": "lab/pipeline",
                "ci.runner": "shared-runner-3",
                "ci.url": "https://gitlab.example.com/lab/pipeline/-/jobs/50021",
            },
        ),
        (
            JENKINS,
            {
                "ci.system": "jenkins",
                "ci.run_id": "jenkins-pipeline-main-57",
                "ci.run_number": "57",
                "ci.workflow": "pipeline/main",
                "ci.job": "Test",
                "ci.job_id": "57",
                "ci.ref": "main",
                "ci.commit": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
                "ci.repository": "https://jenkins-bot:[REDACTED]@git.example.org/lab/pipeline.git",
                "ci.runner": "agent-linux-2",
                "ci.url": "https://ci.example.org/job/pipeline/job/main/57/",
            },
        ),
        (
            BUILDKITE,
            {
                "ci.system": "buildkite",
                "ci.run_id": "f62a1b4d-10f9-4790-bc1c-e2c3a0c80983",
                "ci.run_number": "1514",
                "ci.attempt": "2",
                "ci.workflow": "nightly",
                "ci.job": ":pytest: tests",
                "ci.job_id": "e44f9784-e20e-4b93-a21d-f41fd5869db9",
                "ci.ref": "main",
                "ci.commit": "83a20ec058e2fb00e7fa4558c4c6e81e2dcf253d",
                "ci.repository": "git@github.com:lab/pipeline.git",
                "ci.runner": "agent-7-1",
                "ci.url": "https://buildkite.com/lab/nightly/builds/1514",
            },
        ),
    ],
)
def test_each_system_in_one_scheme(env: dict[str, str], expected: dict[str, str]) -> None:
    got = ci_identity(env)
    assert got == expected
    for name, value in env.items():
        if "TOKEN" in name or "PASSWORD" in name:
            assert all(value not in v for v in got.values()), f"{name} leaked"
    assert "p4ssw0rd" not in str(got)


def test_outside_ci_and_with_a_marker_not_true_nothing() -> None:
    assert ci_identity({"CI": "true", "GITHUB_RUN_ID": "1"}) == {}, "no marker, no guess"
    assert ci_identity({"GITHUB_ACTIONS": "false", "GITHUB_RUN_ID": "1"}) == {}
    assert ci_identity({}) == {}


def test_missing_and_empty_variables_are_left_out() -> None:
    assert ci_identity({"GITLAB_CI": "true", "CI_PIPELINE_ID": "7", "CI_JOB_NAME": ""}) == {
        "ci.system": "gitlab-ci",
        "ci.run_id": "7",
    }
    assert "ci.attempt" not in ci_identity({"BUILDKITE": "true", "BUILDKITE_RETRY_COUNT": "x"})


def test_a_secret_value_is_redacted_wherever_it_appears() -> None:
    env = {**GITHUB, "DEPLOY_TOKEN": "topsecretvalue", "GITHUB_WORKFLOW": "deploy with topsecretvalue"}
    assert ci_identity(env)["ci.workflow"] == "deploy with [REDACTED]"


def test_every_system_reads_only_named_non_secret_variables() -> None:
    keys = {"run_id", "run_number", "attempt", "workflow", "job", "job_id", "ref", "commit", "repository", "runner",
            "url"}  # fmt: skip
    for system, _marker, readers in SYSTEMS:
        assert set(readers) <= keys, system
