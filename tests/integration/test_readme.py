"""The README is tested: its tour runs command by command on a fresh state home with no configuration, and
every other command it shows must parse against the real CLI (a renamed option or verb fails here)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest

from jobprov.cli.main import cli
from jobprov.embedded.service import DEFAULT_API_PORT, DEFAULT_KAFKA_PORT, launch, stop
from jobprov.embedded.tansu import port_free

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)

# What the tour's commands must print: the README's claims, checked. A query is retried until it holds (or
# a deadline passes): the worker folds what the previous command sent a moment later.
EXPECT: dict[str, list[str]] = {
    "query series AM1 --format csv": ["label,bucket,time,value,unit,job_id", "nightly-14", "reduce-1"],
    "query regressions AM1": ["nightly-12", "software.numpy: 1.26.4 → 2.0.1"],
    "query compare nightly-11 nightly-12": ["software.numpy", "1.26.4", "2.0.1"],
    "query job reduce-1": ["succeeded", "testdata_cfht"],
    "query status": ["succeeded  16"],
    "query plot AM1": ["wrote", "am1.png", "am1.html"],
    "replay --from events-table --verify --swap": ['"differences": []', '"swapped": true'],
}
# ... and what they must not print (once the annotation is folded, the annotated job is left out).
ABSENT = {"query series AM1 --exclude-annotated quality=bad --format csv": ["nightly-03"]}


def blocks(kind: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == kind]


def _resolve(args: list[str]) -> click.Command:
    """Parse ``jobprov ARGS`` as click would, down to the leaf command; raises on unknown verbs or options."""
    command: click.Command = cli
    ctx = cli.make_context("jobprov", list(args), resilient_parsing=False)
    while isinstance(command, click.Group):
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 9.0 puts them in args
            warnings.simplefilter("ignore", DeprecationWarning)
            pending = [*ctx.protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, pending)
        assert sub is not None, f"no command {name!r}"
        command = sub
        ctx = sub.make_context(name or "", rest, parent=ctx, resilient_parsing=False)
    return command


def test_every_jobprov_command_in_the_readme_parses() -> None:
    commands = []
    for body in blocks("sh") + blocks("console"):
        for raw in body.splitlines():
            line = raw.removeprefix("$ ").split("  #", 1)[0].strip()
            if line.startswith("jobprov "):
                commands.append(line)
    assert len(commands) > 30
    for line in commands:
        words = shlex.split(line)[1:]
        words = [w for w in words if w not in ("-h", "--help")]
        try:
            _resolve(words)
        except click.exceptions.Exit:
            pass
        except click.ClickException as exc:
            pytest.fail(f"README: `{line}` does not parse: {exc.format_message()}")
    for body in blocks("python"):
        compile(body, "README.md", "exec")
    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for named in re.findall(r"jobprov\[([\w,]+)\]|'\.\[([\w,]+)\]'", README.read_text()):
        for extra in ",".join(named).split(","):
            assert not extra or extra in extras, f"README names the extra [{extra}], pyproject.toml has none"
    for line in [ln for body in blocks("sh") for ln in body.splitlines() if ln.startswith("make ")]:
        target = line.split()[1]
        assert re.search(rf"^{target}:", (README.parent / "Makefile").read_text(), re.MULTILINE), line


def _run(command: str, env: dict[str, str], cwd: Path) -> str:
    key = command.removeprefix("jobprov ")
    expected = EXPECT.get(next((k for k in EXPECT if key.startswith(k)), ""), [])
    absent = ABSENT.get(key, [])
    deadline = time.monotonic() + (60 if expected or absent else 0)
    while True:
        result = subprocess.run(command, shell=True, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        out = result.stdout + result.stderr
        if result.returncode == 0 and all(e in out for e in expected) and not any(a in out for a in absent):
            return result.stdout
        if time.monotonic() > deadline:
            pytest.fail(
                f"README tour: `{command}` exited {result.returncode}, wanted {expected} and not {absent}:\n{out}"
            )
        time.sleep(1)


def test_the_tour_runs_command_by_command(tmp_path: Path) -> None:
    for port in (DEFAULT_KAFKA_PORT, DEFAULT_API_PORT):
        assert port_free(port), f"the tour needs 127.0.0.1:{port} free (jobprov up's default)"
    home = tmp_path / "home"
    bindir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    env |= {"JOBPROV_HOME": str(home), "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}"}

    text = README.read_text()
    tour = text[text.index("## A five-minute tour") :]
    tour = tour[: tour.index("\n## ", 1)]
    for lang, body in FENCE.findall(tour):
        if lang == "python" and body.startswith("# file: "):
            name = body.splitlines()[0].removeprefix("# file: ").strip()
            (tmp_path / name).write_text(body)

    up: subprocess.Popen[bytes] | None = None
    ran: list[str] = []
    try:
        for lang, body in FENCE.findall(tour):
            if lang != "console":
                continue
            for line in body.splitlines():
                if line.strip() == "^C":
                    assert up is not None
                    assert stop(up) == 0
                    assert not (home / "up.json").exists()
                    ran.append("^C")
                    continue
                command = line.removeprefix("$ ").strip()
                if command == "jobprov up":
                    up, _ = launch(shlex.split(command)[2:], env=env, home=home, log_path=tmp_path / "up.log")
                else:
                    _run(command, env, tmp_path)
                ran.append(command)
    finally:
        if up is not None:
            stop(up)
    assert ran[0] == "jobprov up" and "^C" in ran and len(ran) >= 12
    assert (tmp_path / "am1.png").read_bytes().startswith(b"\x89PNG")
    assert "software.numpy: 1.26.4 → 2.0.1" in (tmp_path / "am1.html").read_text()
    _check_the_nightly_times(env, tmp_path)


NIGHTLY_START_S = 1_790_000_000  # nightly.py's first night; one night later each time


def _check_the_nightly_times(env: dict[str, str], cwd: Path) -> None:
    """nightly.py backdates its jobs: each night's AM1 point lies at that night's start (not at "now", which
    would stack the plot in one column), and each job lasts the seconds it ran, not the months since then."""
    rows = list(csv.DictReader(io.StringIO(_run("jobprov query series AM1 --format csv", env, cwd))))
    nights = {int(r["job_id"].removeprefix("nightly-")): r for r in rows if r["job_id"].startswith("nightly-")}
    assert sorted(nights) == list(range(15))
    for night, row in nights.items():
        start = datetime.fromtimestamp(NIGHTLY_START_S + night * 86_400, UTC)
        offset = datetime.fromisoformat(row["time"]) - start
        assert timedelta(0) <= offset < timedelta(minutes=1), (night, row["time"])
    job = json.loads(_run("jobprov query job nightly-00 --format json", env, cwd))
    start = datetime.fromtimestamp(NIGHTLY_START_S, UTC)
    assert datetime.fromisoformat(job["started_at"]) == start
    assert timedelta(0) <= datetime.fromisoformat(job["finished_at"]) - start < timedelta(minutes=1)
    assert 0 <= job["duration_ms"] < 60_000
