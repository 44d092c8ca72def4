"""Secrets never reach an event: command-line redaction and environment allow-listing."""

from __future__ import annotations

import re

import pytest

from jobprov.emitters.redact import (
    REDACTED,
    capture_environment,
    is_secret_name,
    redact_argv,
    redact_text,
    secret_values,
)

GITHUB_TOKEN = "ghp_" + "Zq4mT8vK2pX9wL3nR7sD1fH6jB5cY0aE8gU2"
AWS_KEY_ID = "AKIA" + "Q7X3M9K2PL5ZV8RT"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
ENV_SECRET = "zq8-very-secret-value"
ENVIRON = {"MY_API_KEY": ENV_SECRET, "HOME": "/home/alice", "PATH": "/usr/bin"}

HARMLESS = ["--verbose", "input.fits", "--keyfile", "/path/k.pem", "--band", "r"]


def test_token_formats_are_what_the_test_says() -> None:
    assert re.fullmatch(r"ghp_[A-Za-z0-9]{36}", GITHUB_TOKEN)
    assert re.fullmatch(r"AKIA[0-9A-Z]{16}", AWS_KEY_ID)
    assert JWT.count(".") == 2


# (argv, secrets that must not survive)
CASES = {
    "github token": ([GITHUB_TOKEN], [GITHUB_TOKEN]),
    "github token in option": ([f"--gh={GITHUB_TOKEN}"], [GITHUB_TOKEN]),
    "aws key id": ([AWS_KEY_ID], [AWS_KEY_ID]),
    "aws key id as value": (["--access", AWS_KEY_ID], [AWS_KEY_ID]),
    "jwt": (["--header", JWT], [JWT]),
    "password option, separate value": (["--password", "hunter2secret"], ["hunter2secret"]),
    "password option, = value": (["--password=hunter2secret"], ["hunter2secret"]),
    "token option, = value": (["--token=abc123def456"], ["abc123def456"]),
    "token option, separate value": (["--token", "abc123def456"], ["abc123def456"]),
    "secret assignment": (["DB_PASSWORD=s3cr3t!"], ["s3cr3t!"]),
    "url credentials": (["https://user:p4ssw0rd@host/repo.git"], ["p4ssw0rd"]),
    "bearer header": (["-H", "Authorization: Bearer abcdefghijkl"], ["abcdefghijkl"]),
    "secret env value inside an argument": ([f"--conn=host=db;pw={ENV_SECRET};x=1"], [ENV_SECRET]),
    "secret env value as an argument": ([ENV_SECRET], [ENV_SECRET]),
    "api key option": (["--api-key", "k3y-material-9f8e"], ["k3y-material-9f8e"]),
}


@pytest.mark.parametrize(("argv", "secrets"), list(CASES.values()), ids=list(CASES))
def test_secret_never_survives(argv: list[str], secrets: list[str]) -> None:
    full = ["python", "job.py", *HARMLESS[:2], *argv, *HARMLESS[2:]]
    out = redact_argv(full, ENVIRON)
    joined = "\x00".join(out)
    for secret in secrets:
        assert secret not in joined, out
    assert REDACTED in joined
    # Harmless arguments are untouched and keep their places.
    assert out[:4] == ["python", "job.py", *HARMLESS[:2]]
    assert out[-4:] == HARMLESS[2:]
    assert len(out) == len(full)


def test_all_secrets_in_one_command_line() -> None:
    argv = [
        "python",
        "run.py",
        *HARMLESS,
        GITHUB_TOKEN,
        AWS_KEY_ID,
        JWT,
        "--password",
        "hunter2secret",
        "--token=abc123def456",
        "DB_PASSWORD=s3cr3t!",
        "https://user:p4ssw0rd@host/repo.git",
        "Authorization: Bearer abcdefghijkl",
        f"--note=uses {ENV_SECRET} here",
    ]
    out = redact_argv(argv, ENVIRON)
    joined = " ".join(out)
    for secret in (GITHUB_TOKEN, AWS_KEY_ID, JWT, "hunter2secret", "abc123def456", "s3cr3t!", "p4ssw0rd"):
        assert secret not in joined
    assert "abcdefghijkl" not in joined
    assert ENV_SECRET not in joined
    assert out[:8] == ["python", "run.py", *HARMLESS]
    # What is not secret stays readable.
    assert "https://user:" in joined and "@host/repo.git" in joined
    assert "DB_PASSWORD=" in joined
    assert "--token=" in joined


def test_harmless_arguments_survive_unchanged() -> None:
    argv = ["python", "-m", "pipeline", *HARMLESS, "--output=/data/out", "x=1", "https://host/repo.git"]
    assert redact_argv(argv, ENVIRON) == argv


def test_password_and_value_in_one_argument() -> None:
    """One argv element holding option and value (``sh -c``-style quoting, or a wrapper that joined them)."""
    out = redact_argv(["tool", "--password hunter2secret", "input.fits"], ENVIRON)
    assert "hunter2secret" not in " ".join(out), out
    assert out[-1] == "input.fits", "the next argument is not a secret and must survive"


def test_secrets_inside_a_shell_command_string() -> None:
    """``jobprov run -- sh -c "..."``: the whole script is one argument and still must not leak."""
    script = "./deploy --password hunter2secret --token=abc123def456 && DB_PASSWORD=s3cr3t! ./migrate input.fits"
    out = redact_argv(["sh", "-c", script], ENVIRON)
    joined = " ".join(out)
    for secret in ("hunter2secret", "abc123def456", "s3cr3t!"):
        assert secret not in joined, out
    assert "input.fits" in joined


def test_redact_text_known_secrets_and_formats() -> None:
    text = f"clone https://bot:{GITHUB_TOKEN}@github.com/x.git with key {AWS_KEY_ID} and {ENV_SECRET}"
    out = redact_text(text, [ENV_SECRET])
    assert GITHUB_TOKEN not in out
    assert AWS_KEY_ID not in out
    assert ENV_SECRET not in out
    assert out.startswith("clone https://bot:")


def test_short_known_secrets_do_not_shred_text() -> None:
    # Values shorter than six characters are too likely to be ordinary words.
    assert redact_text("band r input.fits", ["r", "fits"]) == "band r input.fits"


def test_secret_values_only_from_secret_names() -> None:
    environ = {"MY_API_KEY": ENV_SECRET, "DB_PASSWORD": "s3cr3t!", "HOME": "/home/alice", "SHORT_TOKEN": "abc"}
    assert secret_values(environ) == [ENV_SECRET, "s3cr3t!"]


@pytest.mark.parametrize(
    "name",
    [
        "PASSWORD",
        "db_password",
        "GITHUB_TOKEN",
        "CI_JOB_TOKEN",
        "MY_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "key",
        "PGPASSWD",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["HOME", "PATH", "USER", "keyfile", "monkey", "OMP_NUM_THREADS", "SLURM_JOB_ID", "author", "tokenizer"]
)
def test_harmless_names(name: str) -> None:
    assert not is_secret_name(name)


# --- environment ------------------------------------------------------------------------------------------

ENVIRONMENT = {
    "HOME": "/home/alice",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "USER": "alice",
    "SLURM_JOB_ID": "123456",
    "SLURM_NTASKS": "64",
    "CI": "true",
    "CI_JOB_TOKEN": "glcbt-64_Zq4mT8vK2pX9wL3nR7sD",
    "CI_PROJECT_URL": "https://gitlab.example.org/astro/drp",
    "CI_REPOSITORY_URL": "https://gitlab-ci-token:glcbt-64_Zq4mT8vK2pX9wL3nR7sD@gitlab.example.org/astro/drp.git",
    "OMP_NUM_THREADS": "8",
}
ALLOW = ["USER", "SLURM_*", "CI", "CI_*", "OMP_NUM_THREADS"]


def test_capture_environment_allowlist_only() -> None:
    captured = capture_environment(ENVIRONMENT, ALLOW)
    assert set(captured) == {
        "USER",
        "SLURM_JOB_ID",
        "SLURM_NTASKS",
        "CI",
        "CI_JOB_TOKEN",
        "CI_PROJECT_URL",
        "CI_REPOSITORY_URL",
        "OMP_NUM_THREADS",
    }
    assert "HOME" not in captured
    assert "AWS_SECRET_ACCESS_KEY" not in captured
    assert captured["USER"] == "alice"
    assert captured["SLURM_JOB_ID"] == "123456"
    assert captured["CI_PROJECT_URL"] == "https://gitlab.example.org/astro/drp"


def test_capture_environment_redacts_allowlisted_secrets() -> None:
    captured = capture_environment(ENVIRONMENT, ALLOW)
    assert captured["CI_JOB_TOKEN"] == REDACTED
    everything = " ".join(f"{k}={v}" for k, v in captured.items())
    assert "glcbt-64_Zq4mT8vK2pX9wL3nR7sD" not in everything  # nor inside another variable's value
    assert "wJalrXUtnFEMI" not in everything
    assert captured["CI_REPOSITORY_URL"].endswith("@gitlab.example.org/astro/drp.git")


def test_capture_environment_patterns_are_case_sensitive_and_anchored() -> None:
    captured = capture_environment({"ci_thing": "x", "MYCI_X": "y", "CI_X": "z"}, ["CI_*"])
    assert captured == {"CI_X": "z"}


def test_capture_environment_empty_allowlist() -> None:
    assert capture_environment(ENVIRONMENT, []) == {}
