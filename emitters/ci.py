"""The CI build a job runs in, as provenance keys: one naming scheme for GitHub Actions, GitLab CI, Jenkins, Buildkite.

``ci_identity(environ)`` returns, for the first system whose marker variable is set, the keys ``ci.system``,
``ci.run_id``, ``ci.run_number``, ``ci.attempt``, ``ci.workflow``, ``ci.job``, ``ci.job_id``, ``ci.ref``,
``ci.commit``, ``ci.repository``, ``ci.runner`` and ``ci.url``, each read from the variable the system documents
for it (``SYSTEMS`` below; the same table, by system, is in docs/integrations.md). A key the system has no
variable for, or whose variable is unset or empty, is left out.

Only these named variables are read: never a token (``GITHUB_TOKEN``, ``CI_JOB_TOKEN``,
``BUILDKITE_AGENT_ACCESS_TOKEN``...), and values pass through the same redaction as captured environment
(credentials in a repository URL such as Jenkins' ``GIT_URL`` are removed). Markers: ``GITHUB_ACTIONS=true``,
``GITLAB_CI=true``, ``JENKINS_URL``, ``BUILDKITE=true``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Reader = Callable[[Mapping[str, str]], str | None]


def _var(*names: str) -> Reader:
    def read(env: Mapping[str, str]) -> str | None:
        return next((env[n] for n in names if env.get(n)), None)

    return read


def _plus_one(name: str) -> Reader:
    def read(env: Mapping[str, str]) -> str | None:
        raw = env.get(name, "")
        return str(int(raw) + 1) if raw.isdigit() else None

    return read


def _github_url(env: Mapping[str, str]) -> str | None:
    parts = [env.get(n) for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None


# system name, marker (variable, value or None for "set"), key -> reader
SYSTEMS: tuple[tuple[str, tuple[str, str | None], dict[str, Reader]], ...] = (
    (
        "github-actions",
        ("GITHUB_ACTIONS", "true"),
        {
            "run_id": _var("GITHUB_RUN_ID"),
            "run_number": _var("GITHUB_RUN_NUMBER"),
            "attempt": _var("GITHUB_RUN_ATTEMPT"),
            "workflow": _var("GITHUB_WORKFLOW"),
            "job": _var("GITHUB_JOB"),
            "ref": _var("GITHUB_REF"),
            "commit": _var("GITHUB_SHA"),
            "repository": _var("GITHUB_REPOSITORY"),
            "runner": _var("RUNNER_NAME"),
            "url": _github_url,
        },
    ),
    (
        "gitlab-ci",
        ("GITLAB_CI", "true"),
        {
            "run_id": _var("CI_PIPELINE_ID"),
            "run_number": _var("CI_PIPELINE_IID"),
            "workflow": _var("CI_PIPELINE_NAME"),
            "job": _var("CI_JOB_NAME"),
            "job_id": _var("CI_JOB_ID"),
            "ref": _var("CI_COMMIT_REF_NAME"),
            "commit": _var("CI_COMMIT_SHA"),
            "repository": _var("CI_PROJECT_PATH"),
            "runner": _var("CI_RUNNER_DESCRIPTION"),
            "url": _var("CI_JOB_URL"),
        },
    ),
    (
        "jenkins",
        ("JENKINS_URL", None),
        {
            "run_id": _var("BUILD_TAG"),
            "run_number": _var("BUILD_NUMBER"),
            "workflow": _var("JOB_NAME"),
            "job": _var("STAGE_NAME"),
            "job_id": _var("BUILD_ID"),
            "ref": _var("BRANCH_NAME", "GIT_BRANCH"),
            "commit": _var("GIT_COMMIT"),
            "repository": _var("GIT_URL"),
            "runner": _var("NODE_NAME"),
            "url": _var("BUILD_URL"),
        },
    ),
    (
        "buildkite",
        ("BUILDKITE", "true"),
        {
            "run_id": _var("BUILDKITE_BUILD_ID"),
            "run_number": _var("BUILDKITE_BUILD_NUMBER"),
            "attempt": _plus_one("BUILDKITE_RETRY_COUNT"),
            "workflow": _var("BUILDKITE_PIPELINE_SLUG"),
            "job": _var("BUILDKITE_LABEL"),
            "job_id": _var("BUILDKITE_JOB_ID"),
            "ref": _var("BUILDKITE_BRANCH"),
            "commit": _var("BUILDKITE_COMMIT"),
            "repository": _var("BUILDKITE_REPO"),
            "runner": _var("BUILDKITE_AGENT_NAME"),
            "url": _var("BUILDKITE_BUILD_URL"),
        },
    ),
)


def ci_identity(environ: Mapping[str, str]) -> dict[str, str]:
    """``ci.*`` provenance keys of the CI build running this process, or {} outside CI (see the module docstring)."""
    from jobprov.emitters.redact import redact_text, secret_values

    for system, (marker, expected), readers in SYSTEMS:
        value = environ.get(marker)
        if not value or (expected is not None and value.lower() != expected):
            continue
        known = secret_values(environ)
        out = {"ci.system": system}
        for key, read in readers.items():
            found = read(environ)
            if found:
                out[f"ci.{key}"] = redact_text(found, known)
        return out
    return {}
