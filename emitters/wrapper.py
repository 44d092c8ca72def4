"""`jobprov run -- CMD ARGS`: wrap any program as a job.

The wrapper records the job's life around the child process, samples the whole process tree's resources
at an interval, forwards signals, and exits with the child's exit code (128 + N when the child died of
signal N, as shells do). The child learns its job through ``JOBPROV_JOB_ID``/``JOBPROV_URL`` so that
`jobprov emit` calls and Python ``jobprov.job()`` blocks inside it add to the same job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from jobprov.emitters import capture
from jobprov.emitters.emitter import Emitter
from jobprov.emitters.redact import capture_environment
from jobprov.emitters.sampler import TreeSampler
from jobprov.schemas.models import (
    Dataset,
    Heartbeat,
    JobFinished,
    JobSubmitted,
    ProvenanceDeclared,
    ResourceSample,
)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
TERMINATING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


@dataclass
class RunSpec:
    argv: Sequence[str]
    name: str | None = None
    kind: str | None = None
    job_id: str | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    datasets: Sequence[Dataset] = ()
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


def run(spec: RunSpec, emitter: Emitter, environ: Mapping[str, str] | None = None) -> int:
    """Run the child as a job; return the exit code the wrapper should exit with."""
    env = dict(os.environ if environ is None else environ)
    settings = emitter.settings
    job_id = spec.job_id or str(uuid.uuid4())
    attempt = capture.detect_attempt(env)

    def emit(payload: object) -> None:
        emitter.emit(job_id, payload, attempt=attempt)

    emit(
        JobSubmitted(
            name=spec.name or os.path.basename(spec.argv[0]),
            kind=spec.kind or capture.detect_kind(env),
            parent_job_id=spec.parent_job_id,
            workflow_id=spec.workflow_id,
            dag_node=spec.dag_node,
            submitter=env.get("USER"),
            scheduler_ids=capture.scheduler_ids(env),
        )
    )
    emit(capture.job_started(list(spec.argv), env, python=False))
    emit(
        ProvenanceDeclared(
            values=dict(spec.provenance),
            datasets=list(spec.datasets),
            git=capture.git_info() if settings.capture_git else None,
            environment=capture_environment(env, settings.env_allowlist),
        )
    )
    child_env = {
        **env,
        "JOBPROV_JOB_ID": job_id,
        "JOBPROV_URL": settings.url,
        "JOBPROV_SPOOL_DIR": settings.spool_dir,
        "JOBPROV_ATTEMPT": str(attempt),
    }
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(spec.argv), env=child_env)
    except OSError as exc:
        emit(
            JobFinished(
                status="failed",
                exit_code=127,
                exception_type=type(exc).__name__,
                exception_message=str(exc),
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        )
        emitter.close()
        print(f"jobprov run: cannot start {spec.argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127

    sampler = TreeSampler(proc.pid)
    with _Forwarder(proc) as forwarder:
        last = _watch(proc, sampler, emitter, job_id, attempt)
    final = sampler.final(last)
    emit(final)
    code = proc.returncode
    child_signal = -code if code < 0 else None
    exit_code = 128 + child_signal if child_signal else code
    if forwarder.received is not None:
        status, sig = "aborted", forwarder.received
    elif code == 0:
        status, sig = "succeeded", None
    else:
        status, sig = "failed", child_signal
    emit(
        JobFinished(
            status=status,
            exit_code=exit_code,
            signal=sig,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    )
    emitter.close()
    return exit_code


def _watch(
    proc: subprocess.Popen[bytes], sampler: TreeSampler, emitter: Emitter, job_id: str, attempt: int
) -> ResourceSample | None:
    settings = emitter.settings
    last: ResourceSample | None = None
    next_beat = time.monotonic() + settings.heartbeat_interval_s
    while True:
        try:
            proc.wait(timeout=settings.sample_interval_s)
            return last
        except subprocess.TimeoutExpired:
            pass
        sample = sampler.sample()
        if sample is not None:
            last = sample
            emitter.emit(job_id, sample, attempt=attempt)
        if time.monotonic() >= next_beat:
            emitter.emit(job_id, Heartbeat(interval_ms=int(settings.heartbeat_interval_s * 1000)), attempt=attempt)
            next_beat += settings.heartbeat_interval_s
