"""What `jobprov run` and `jobprov.job()` learn from git, on a real repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jobprov.emitters import capture


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "pipeline.py").write_text("print('v1')\n")
    _git(tmp_path, "add", "pipeline.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    _git(tmp_path, "remote", "add", "origin", "https://bot:s3cr3t-t0ken@git.example.org/lab/pipeline.git")
    return tmp_path


def test_commit_branch_and_a_clean_tree(repo: Path) -> None:
    facts = capture.read_git(repo)
    assert facts is not None
    assert facts.commit == _git(repo, "rev-parse", "HEAD")
    assert (facts.branch, facts.dirty) == ("main", False)


def test_a_changed_tracked_file_makes_the_tree_dirty(repo: Path) -> None:
    (repo / "pipeline.py").write_text("print('v2')\n")
    facts = capture.read_git(repo)
    assert facts is not None and facts.dirty is True


def test_a_detached_head_has_no_branch(repo: Path) -> None:
    _git(repo, "checkout", "-q", "--detach")
    facts = capture.read_git(repo)
    assert facts is not None and facts.branch is None


def test_the_remote_loses_its_credentials_in_the_event(repo: Path) -> None:
    info = capture.git_info(repo)
    assert info is not None and info.remote is not None
    assert "s3cr3t-t0ken" not in info.remote
    assert info.remote.endswith("@git.example.org/lab/pipeline.git")


def test_outside_a_repository_there_is_nothing(tmp_path: Path) -> None:
    assert capture.read_git(tmp_path) is None
    assert capture.git_info(tmp_path) is None
