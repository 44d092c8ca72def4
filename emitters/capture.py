"""Automatic capture of where and how a job runs: host, OS, Python, packages, git, scheduler ids.

Everything here is best effort and bounded in time: a missing git, an unreadable file or a slow
filesystem yields less provenance, never an error or a stall.

`jobprov run` calls ``detect_attempt`` and ``read_git`` before it starts the job, so this module imports
nothing heavy at load time (the event model, redaction and package metadata are imported where used).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from jobprov.schemas.models import GitInfo, JobStarted

_GIT_TIMEOUT_S = 2.0

# Environment variable -> scheduler id key. The first of each group that is set wins.
_SCHEDULER_VARS = {
    "slurm_job_id": ("SLURM_JOB_ID", "SLURM_JOBID"),
    "slurm_array_job_id": ("SLURM_ARRAY_JOB_ID",),
    "slurm_array_task_id": ("SLURM_ARRAY_TASK_ID",),
    "pbs_job_id": ("PBS_JOBID",),
    "lsf_job_id": ("LSB_JOBID",),
    "condor_job_id": ("CONDOR_JOB_ID", "_CONDOR_JOB_ID"),
    "github_run_id": ("GITHUB_RUN_ID",),
    "github_run_attempt": ("GITHUB_RUN_ATTEMPT",),
    "gitlab_job_id": ("CI_JOB_ID",),
    "gitlab_pipeline_id": ("CI_PIPELINE_ID",),
    "jenkins_build_id": ("BUILD_ID",),
    "jenkins_build_number": ("BUILD_NUMBER",),
    "jenkins_job_name": ("JOB_NAME",),
    "buildkite_build_id": ("BUILDKITE_BUILD_ID",),
}
_HPC_KEYS = {"slurm_job_id", "pbs_job_id", "lsf_job_id", "condor_job_id"}


def scheduler_ids(environ: Mapping[str, str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for key, names in _SCHEDULER_VARS.items():
        for name in names:
            if environ.get(name):
                ids[key] = environ[name]
                break
    return ids


def detect_kind(environ: Mapping[str, str]) -> str:
    ids = scheduler_ids(environ)
    if ids.keys() & _HPC_KEYS:
        return "hpc"
    if environ.get("CI") or ids:
        return "ci"
    return "batch"


def detect_attempt(environ: Mapping[str, str]) -> int:
    """The job's attempt number from our own variable or the scheduler's restart/attempt counters."""
    for name, offset in (("JOBPROV_ATTEMPT", 0), ("SLURM_RESTART_COUNT", 1), ("GITHUB_RUN_ATTEMPT", 0)):
        raw = environ.get(name)
        if raw and raw.isdigit():
            return max(1, int(raw) + offset)
    return 1


def container_image(environ: Mapping[str, str]) -> str | None:
    for name in ("JOBPROV_CONTAINER_IMAGE", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "CONTAINER_IMAGE"):
        if environ.get(name):
            return environ[name]
    return None


def job_started(argv: list[str], environ: Mapping[str, str], *, python: bool = True) -> JobStarted:
    from jobprov.emitters.redact import redact_argv
    from jobprov.schemas.models import JobStarted

    uname = platform.uname()
    return JobStarted(
        host=socket.gethostname(),
        os=f"{uname.system} {_os_release()}".strip(),
        kernel=f"{uname.release} {uname.machine}",
        python=platform.python_version() if python else None,
        cwd=os.getcwd(),
        command_line=redact_argv(argv, environ),
        container_image=container_image(environ),
        pid=os.getpid(),
    )


def _os_release() -> str:
    try:
        info = platform.freedesktop_os_release()
        return info.get("PRETTY_NAME", "")
    except OSError:
        return platform.platform(terse=True)


def installed_packages() -> dict[str, str]:
    """Name -> version of every distribution importable by this interpreter."""
    from importlib import metadata

    packages: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[str(name).lower()] = str(dist.version)
    return dict(sorted(packages.items()))


class GitFacts(NamedTuple):
    commit: str
    branch: str | None
    dirty: bool | None
    remote: str | None  # as configured: may hold credentials until redacted


def read_git(cwd: str | Path | None = None) -> GitFacts | None:
    """Commit, branch, dirtiness and remote of the git tree holding ``cwd``, or None outside one.

    The three questions go to git at once (`jobprov run` asks before it starts the job, so this is time the
    job waits)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    questions = {
        "head": ["rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
        "status": ["status", "--porcelain", "--untracked-files=no"],
        "remote": ["config", "--get", "remote.origin.url"],
    }
    running: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, args in questions.items():
            running[name] = subprocess.Popen(
                ["git", *args], cwd=cwd, env=env, text=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
    except OSError:  # no git
        for proc in running.values():
            proc.kill()
            proc.wait()
        return None
    answers: dict[str, str | None] = {}
    deadline = time.monotonic() + _GIT_TIMEOUT_S
    for name, proc in running.items():
        try:
            out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            answers[name] = out.strip() if proc.returncode == 0 else None
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            answers[name] = None
    head = (answers["head"] or "").splitlines()
    if len(head) != 2 or not head[0]:
        return None
    commit, branch = head
    status = answers["status"]
    return GitFacts(commit, None if branch == "HEAD" else branch, None if status is None else bool(status),
                    answers["remote"])  # fmt: skip


def git_info_of(facts: GitFacts | None) -> GitInfo | None:
    """The event model's GitInfo, with credentials removed from the remote."""
    if facts is None:
        return None
    from jobprov.emitters.redact import redact_text
    from jobprov.schemas.models import GitInfo

    return GitInfo(
        commit=facts.commit,
        branch=facts.branch,
        dirty=facts.dirty,
        remote=redact_text(facts.remote) if facts.remote else None,
    )


def git_info(cwd: str | Path | None = None) -> GitInfo | None:
    """Commit, branch, dirtiness and remote (credentials removed) of the git tree holding ``cwd``."""
    return git_info_of(read_git(cwd))


def command_line() -> list[str]:
    return [sys.executable, *sys.argv] if sys.argv and sys.argv[0] else [sys.executable]
