"""`jobprov run -- CMD ARGS`: wrap any program as a job.

The wrapper records the job's life around the child process, samples the whole process tree's resources
at an interval, forwards signals, and exits with the child's exit code (128 + N when the child died of
signal N, as shells do). The child learns its job through ``JOBPROV_JOB_ID``/``JOBPROV_URL`` so that
`jobprov emit` calls and Python ``jobprov.job()`` blocks inside it add to the same job.

The job starts first: the wrapper reads only what must precede it (settings, attempt, git state), starts
the child, takes over its signals, and only then loads the emitter and records the job's opening events
with their real times. Its own start-up (imports, the broker client) thus overlaps the job instead of
delaying it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from jobprov.emitters import capture

if TYPE_CHECKING:
    from jobprov.emitters.emitter import Emitter
    from jobprov.emitters.sampler import TreeSampler
    from jobprov.schemas.models import ResourceSample
    from jobprov.settings import EmitterSettings

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
TERMINATING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


@dataclass
class RunSpec:
    argv: Sequence[str]
    name: str | None = None
    kind: str | None = None
    job_id: str | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    datasets: Sequence[tuple[str, str | None]] = ()  # (name, version)
    parent_job_id: str | None = None
    workflow_id: str | None = None
    dag_node: str | None = None


def _in_terminal_foreground() -> bool:
    """True when a terminal's Ctrl-C reaches our whole process group (the child included) by itself."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


class _Forwarder:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Forwarder:
        for sig in FORWARDED:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum in TERMINATING and self.received is None:
            self.received = signum
        if signum == signal.SIGINT and _in_terminal_foreground():
            return  # the terminal already sent it to the child, which shares our process group
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]


def run(
    spec: RunSpec,
    settings: EmitterSettings,
    make_emitter: Callable[[], Emitter],
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the child as a job; return the exit code the wrapper should exit with."""
    submitted_at = time.time()
    env = dict(os.environ if environ is None else environ)
    job_id = spec.job_id or str(uuid.uuid4())
    attempt = capture.detect_attempt(env)
    # Before the job starts, so that what the job itself changes does not count as the tree's state.
    git = capture.read_git() if settings.capture_git else None
    child_env = {
        **env,
        "JOBPROV_JOB_ID": job_id,
        "JOBPROV_URL": settings.url,
        "JOBPROV_SPOOL_DIR": settings.spool_dir,
        "JOBPROV_ATTEMPT": str(attempt),
    }
    started, started_at = time.monotonic(), time.time()
    try:
        proc = subprocess.Popen(list(spec.argv), env=child_env)
    except OSError as exc:
        emitter = make_emitter()
        _opening_events(spec, emitter, env, job_id, attempt, git, submitted_at, started_at)
        _finish(emitter, job_id, attempt, status="failed", exit_code=127, exc=exc, started=started)
        print(f"jobprov run: cannot start {spec.argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127

    with _Forwarder(proc) as forwarder:
        from jobprov.emitters.sampler import TreeSampler

        emitter = make_emitter()
        _opening_events(spec, emitter, env, job_id, attempt, git, submitted_at, started_at)
        sampler = TreeSampler(proc.pid)
        last = _watch(proc, sampler, emitter, job_id, attempt)
    emitter.emit(job_id, sampler.final(last), attempt=attempt)
    code = proc.returncode
    child_signal = -code if code < 0 else None
    exit_code = 128 + child_signal if child_signal else code
    if forwarder.received is not None:
        status, sig = "aborted", forwarder.received
    elif code == 0:
        status, sig = "succeeded", None
    else:
        status, sig = "failed", child_signal
    _finish(emitter, job_id, attempt, status=status, exit_code=exit_code, signal=sig, started=started)
    return exit_code


def _opening_events(
    spec: RunSpec,
    emitter: Emitter,
    env: Mapping[str, str],
    job_id: str,
    attempt: int,
    git: capture.GitFacts | None,
    submitted_at: float,
    started_at: float,
) -> None:
    from jobprov.emitters.ci import ci_identity
    from jobprov.emitters.redact import capture_environment
    from jobprov.schemas.models import Dataset, JobSubmitted, ProvenanceDeclared

    settings = emitter.settings
    submitted = JobSubmitted(
        name=spec.name or os.path.basename(spec.argv[0]),
        kind=spec.kind or capture.detect_kind(env),
        parent_job_id=spec.parent_job_id,
        workflow_id=spec.workflow_id,
        dag_node=spec.dag_node,
        submitter=env.get("USER"),
        scheduler_ids=capture.scheduler_ids(env),
    )
    emitter.emit(job_id, submitted, attempt=attempt, event_time=submitted_at)
    emitter.emit(
        job_id, capture.job_started(list(spec.argv), env, python=False), attempt=attempt, event_time=started_at
    )
    declared = ProvenanceDeclared(
        values={**ci_identity(env), **spec.provenance},  # the CI build (emitters/ci.py); -p keys win
        datasets=[Dataset(name=name, version=version) for name, version in spec.datasets],
        git=capture.git_info_of(git),
        environment=capture_environment(env, settings.env_allowlist),
    )
    emitter.emit(job_id, declared, attempt=attempt, event_time=started_at)


def _finish(
    emitter: Emitter,
    job_id: str,
    attempt: int,
    *,
    status: str,
    exit_code: int,
    started: float,
    signal: int | None = None,
    exc: BaseException | None = None,
) -> None:
    from jobprov.schemas.models import JobFinished

    finished = JobFinished(
        status=status,
        exit_code=exit_code,
        signal=signal,
        exception_type=type(exc).__name__ if exc is not None else None,
        exception_message=str(exc) if exc is not None else None,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    emitter.emit(job_id, finished, attempt=attempt)
    emitter.close()


def _watch(
    proc: subprocess.Popen[bytes], sampler: TreeSampler, emitter: Emitter, job_id: str, attempt: int
) -> ResourceSample | None:
    from jobprov.schemas.models import Heartbeat

    settings = emitter.settings
    last: ResourceSample | None = None
    next_beat = time.monotonic() + settings.heartbeat_interval_s
    # Popen.wait(timeout) polls with sleeps of up to 50 ms, which the job's wall time would pay at its end;
    # a thread blocked in waitpid tells the moment the child exits.
    exited = threading.Event()

    def wait_for_exit() -> None:
        proc.wait()
        exited.set()

    threading.Thread(target=wait_for_exit, name="jobprov-wait", daemon=True).start()
    while not exited.wait(settings.sample_interval_s):
        sample = sampler.sample()
        if sample is not None:
            last = sample
            emitter.emit(job_id, sample, attempt=attempt)
        if time.monotonic() >= next_beat:
            beat = Heartbeat(interval_ms=int(settings.heartbeat_interval_s * 1000))
            emitter.emit(job_id, beat, attempt=attempt)
            next_beat += settings.heartbeat_interval_s
    proc.wait()  # already reaped by the thread: sets nothing new, but makes returncode certain here
    return last
