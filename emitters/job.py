"""The Python API: ``with jobprov.job(...) as job`` or ``@jobprov.job(...)``.

A job records JobSubmitted, JobStarted and its provenance on entry, heartbeats and resource samples while it
runs, and JobFinished (succeeded, failed with the exception, or aborted on KeyboardInterrupt) on exit.
Inside a program wrapped by ``jobprov run`` (``JOBPROV_JOB_ID`` is set) a job joins the wrapping job as a
step instead of starting an unrelated one.

Every method swallows its own failures (counted and reported once at exit): instrumentation must never be
the reason a job fails. Every method takes ``time=`` (aware datetime or epoch seconds) for backfill.

Importing a history (no jsonl needed): ``submitted=`` and ``time=`` (the start) date JobSubmitted and
JobStarted separately, ``host=`` names the host the job ran on, ``attempt=`` says which attempt this is, and
``job.finish(status=..., exit_code=..., signal=..., time=...)`` records the end as it was. These arguments are
the exception to "never raises": a value the pipeline could not store (``jobprov.emitters.validate``) raises
:class:`~jobprov.errors.InvalidEventError` naming the argument at the call, before any event of that job or
of its end is sent, since an import that dropped it quietly would lose history.

A job opened with ``time=`` (a backfilled job) keeps its own clock: an event recorded without a time of its
own is stamped with the job's start plus the time elapsed since the job was entered, so its metrics, steps and
finish fall inside the job and its duration is the real one, not the months between then and now.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from jobprov.emitters import capture
from jobprov.emitters.ci import ci_identity
from jobprov.emitters.emitter import Emitter, get_emitter
from jobprov.emitters.redact import capture_environment, redact_text
from jobprov.emitters.sampler import TreeSampler
from jobprov.emitters.validate import check_code, check_import, check_status
from jobprov.errors import InvalidEventError
from jobprov.schemas.models import (
    JOB_KINDS,
    JOB_WAIT_STATUSES,
    STEP_STATUSES,
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    ConfigRef,
    Dataset,
    Heartbeat,
    JobFinished,
    JobStatusChanged,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
    StepFinished,
    StepStarted,
)

P = ParamSpec("P")
R = TypeVar("R")
Time = datetime | float | None
_MESSAGE_LIMIT = 2000


def _safe(method: Callable[P, R]) -> Callable[P, R | None]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            self = args[0]
            emitter = getattr(self, "_emitter", None)
            if emitter is not None:
                emitter._failures.append(f"{method.__name__}: {type(exc).__name__}: {exc}")
            return None

    return wrapper


def _strs(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (mapping or {}).items()}


def _dataset(item: Dataset | Mapping[str, Any] | str) -> Dataset:
    if isinstance(item, Dataset):
        return item
    if isinstance(item, str):
        return Dataset(name=item)
    unknown = set(item) - {"name", "version", "checksum"}
    if unknown or "name" not in item:
        raise ValueError(f"a dataset is {{name, version?, checksum?}}, got keys {sorted(item)}")
    version, checksum = item.get("version"), item.get("checksum")
    return Dataset(
        name=str(item["name"]),
        version=None if version is None else str(version),
        checksum=None if checksum is None else str(checksum),
    )


def _epoch_seconds(value: Time) -> float | None:
    """A ``time=`` argument as epoch seconds. None for a naive datetime: its zone would be a guess, and the
    emitter reports the events given one (see :func:`jobprov.emitters.emitter.event_time_ms`)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is None):
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


def config_ref(path: str | Path) -> ConfigRef:
    """A configuration file's SHA-256 and a reference to its snapshot."""
    data = Path(path).read_bytes()
    return ConfigRef(hash=f"sha256:{hashlib.sha256(data).hexdigest()}", snapshot_uri=Path(path).resolve().as_uri())


def _exception_fields(exc: BaseException | None) -> tuple[str | None, str | None]:
    if exc is None:
        return None, None
    return type(exc).__qualname__, redact_text(str(exc))[:_MESSAGE_LIMIT]


class Step:
    """A step (task, quantum) inside a job: StepStarted on entry, StepFinished with its status on exit."""

    def __init__(self, job: Job, name: str, attempt: int = 1, parent: str | None = None) -> None:
        self._job = job
        self.name = name
        self.attempt = attempt
        self.parent = parent
        self.caveats: list[str] = []

    def caveat(self, text: str) -> None:
        """Qualify the step's success, e.g. ``partial_outputs`` (seen in Rubin's quantum provenance)."""
        self.caveats.append(str(text))

    def __enter__(self) -> Step:
        self._job._emit(StepStarted(name=self.name, step_attempt=self.attempt, parent_step=self.parent))
        self._job._steps.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self in self._job._steps:
            self._job._steps.remove(self)
        status = "succeeded" if exc is None else ("aborted" if isinstance(exc, KeyboardInterrupt) else "failed")
        etype, message = _exception_fields(exc)
        self._job._emit(
            StepFinished(
                name=self.name,
                step_attempt=self.attempt,
                status=status,
                exception_type=etype,
                exception_message=message,
                caveats=list(self.caveats),
            )
        )


class Job:
    """One job's instrumentation. Create with :func:`jobprov.job`."""

    def __init__(
        self,
        name: str | None = None,
        *,
        job_id: str | None = None,
        kind: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        datasets: Sequence[Dataset | Mapping[str, Any] | str] = (),
        config: ConfigRef | Mapping[str, Any] | None = None,
        config_file: str | Path | None = None,
        parent_job_id: str | None = None,
        workflow_id: str | None = None,
        dag_node: str | None = None,
        submitter: str | None = None,
        machine: str | None = None,
        requested_nodes: int | None = None,
        requested_processes: int | None = None,
        attempt: int | None = None,
        time: Time = None,
        submitted: Time = None,
        host: str | None = None,
        capture_environment: bool = True,
        emitter: Emitter | None = None,
    ) -> None:
        """``time``: when the job started (backfill; default now), ``submitted``: when it was submitted (default:
        its start), ``host``: the host it ran on (default: this one). Raises InvalidEventError for a time outside
        the store's range, a submission after the start, or an empty host."""
        check_import(submitted_s=_epoch_seconds(submitted), started_s=_epoch_seconds(time), host=host)
        if submitted is not None and time is None:
            raise InvalidEventError("submitted: a job backfilled with submitted= needs time= (its start) too")
        self._args = dict(locals())
        del self._args["self"]
        self.name = name
        self._explicit_id = job_id
        self.job_id = job_id or ""
        self.kind = kind
        self.attempt = attempt or 1
        self._start_time = time
        self._emitter_arg = emitter
        self._emitter: Emitter | None = None
        self._joined = False
        self._step: Step | None = None  # the step this job is, when it joined a wrapping job
        self._steps: list[Step] = []  # open steps, innermost last
        self._finished = False
        self._started_at = 0.0  # monotonic, when the job was entered
        self._origin_s: float | None = None  # epoch seconds of a backfilled job's start: its own clock's zero
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._capture_thread: threading.Thread | None = None

    # --- decorator -------------------------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Use as ``@jobprov.job(name=...)``: each call of the function is one job."""
        args = dict(self._args)
        args["name"] = args["name"] or func.__qualname__

        @functools.wraps(func)
        def wrapper(*a: P.args, **kw: P.kwargs) -> R:
            with Job(**args):
                return func(*a, **kw)

        return wrapper

    # --- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Job:
        try:
            self._open()
        except Exception as exc:  # instrumentation failures never reach the job
            if self._emitter is not None:
                self._emitter._failures.append(f"job start: {type(exc).__name__}: {exc}")
        return self

    def _open(self) -> None:
        a = self._args
        env = os.environ
        self._emitter = self._emitter_arg or get_emitter()
        self._started_at = _time.monotonic()
        self._origin_s = _epoch_seconds(self._start_time)
        settings = self._emitter.settings
        joined_id = env.get("JOBPROV_JOB_ID")
        if joined_id and not self._explicit_id:
            # Inside `jobprov run`: this Python program is a step of the wrapping job.
            self._joined = True
            self.job_id = joined_id
            self.attempt = a["attempt"] or capture.detect_attempt(env)
            self._step = Step(self, self.name or "python", parent=env.get("JOBPROV_PARENT_STEP"))
            self._step.__enter__()
        else:
            self.job_id = self._explicit_id or str(uuid.uuid4())
            self.attempt = a["attempt"] or capture.detect_attempt(env)
            kind = self.kind or capture.detect_kind(env)
            if kind not in JOB_KINDS:
                raise ValueError(f"kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}")
            self._emit(
                JobSubmitted(
                    name=self.name or Path(capture.command_line()[-1]).name,
                    kind=kind,
                    parent_job_id=a["parent_job_id"],
                    workflow_id=a["workflow_id"],
                    dag_node=a["dag_node"],
                    submitter=a["submitter"] or env.get("USER"),
                    scheduler_ids=capture.scheduler_ids(env),
                    machine=a["machine"],
                    requested_nodes=a["requested_nodes"],
                    requested_processes=a["requested_processes"],
                ),
                time=a["submitted"] if a["submitted"] is not None else self._start_time,
            )
            started = capture.job_started(capture.command_line(), env)
            if a["host"] is not None:
                started = dataclasses.replace(started, host=a["host"])
            self._emit(started, time=self._start_time)
        config = a["config"]
        if a["config_file"] is not None:
            config = config_ref(a["config_file"])
        elif isinstance(config, Mapping):
            config = ConfigRef(**{k: str(v) for k, v in config.items()})
        # The CI build's identity (emitters/ci.py) for a live job of its own; the caller's keys win.
        live_own = a["capture_environment"] and self._start_time is None and not self._joined
        self.declare(
            {**(ci_identity(env) if live_own else {}), **(a["provenance"] or {})},
            datasets=a["datasets"],
            config=config,
            environment=capture_environment(env, settings.env_allowlist) if a["capture_environment"] else None,
            time=self._start_time,
        )
        if self._start_time is None:  # a live job; backfilled ones have no process to observe
            if settings.capture_packages or (settings.capture_git and not self._joined):
                self._capture_thread = threading.Thread(target=self._capture, name="jobprov-capture", daemon=True)
                self._capture_thread.start()
            if not self._joined:
                self._ticker = threading.Thread(target=self._tick, name="jobprov-heartbeat", daemon=True)
                self._ticker.start()

    def _capture(self) -> None:
        try:
            assert self._emitter is not None
            settings = self._emitter.settings
            software = capture.installed_packages() if settings.capture_packages else {}
            git = capture.git_info() if settings.capture_git and not self._joined else None
            if software or git:
                self._emit(ProvenanceDeclared(software=software, git=git))
        except Exception as exc:
            if self._emitter is not None:
                self._emitter._failures.append(f"capture: {type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        assert self._emitter is not None
        interval = self._emitter.settings.heartbeat_interval_s
        sampler: TreeSampler | None = None  # at the first beat: a job shorter than one never pays for it
        while not self._stop.wait(interval):
            self._emit(Heartbeat(interval_ms=int(interval * 1000)))
            if sampler is None:
                # Its psutil handle reads /proc at creation: a fifth of the time of a job that emits ~50
                # events, when each job made one at its start (py-spy).
                sampler = TreeSampler(os.getpid())
            sample = sampler.sample()
            if sample is not None:
                self._emit(sample)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(Exception):
            self.finish(exc)

    def finish(
        self,
        exc: BaseException | None = None,
        *,
        status: str | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
        time: Time = None,
    ) -> None:
        """End the job (called by ``__exit__``). ``status``, ``exit_code`` and ``signal`` record the end as it was
        (an import), overriding what the exception implies (a SystemExit's code is the exit code otherwise).
        A status outside ``JOB_STATUSES`` or a code that does not fit raises InvalidEventError, and the job stays
        open (its ``__exit__`` still ends it)."""
        if status is not None:
            check_status(status)
        check_code("exit_code", exit_code)
        check_code("signal", signal)
        if self._emitter is None or self._finished:
            return
        self._finished = True
        self._stop.set()
        if self._capture_thread is not None:
            self._capture_thread.join(timeout=1.0)
        if self._joined and self._step is not None:
            self._step.__exit__(type(exc) if exc else None, exc, None)
        else:
            if isinstance(exc, SystemExit):
                code = exc.code
                implied = code if isinstance(code, int) else (0 if code is None else 1)
                exc = None if implied == 0 else exc
                exit_code = implied if exit_code is None else exit_code
            if status is None:
                status = "succeeded" if exc is None else ("aborted" if isinstance(exc, KeyboardInterrupt) else "failed")
            etype, message = _exception_fields(exc)
            # A backfilled job's duration is its finish minus its start, both on its own clock: the fold
            # takes it from the two times.
            duration = None if self._start_time is not None else int((_time.monotonic() - self._started_at) * 1000)
            self._emit(
                JobFinished(
                    status=status,
                    exit_code=exit_code,
                    signal=signal,
                    exception_type=etype,
                    exception_message=message,
                    duration_ms=duration,
                ),
                time=time,
            )
        self._emitter.flush(self._emitter.settings.flush_timeout_s)

    # --- recording -------------------------------------------------------------------------------------

    def _current_step(self) -> str | None:
        return self._steps[-1].name if self._steps else None

    def now(self) -> float | None:
        """The time an event recorded now gets: None (the emitter's clock) for a live job; for a backfilled
        job its start plus the time elapsed since it was entered, in epoch seconds."""
        if self._origin_s is None:
            return None
        return self._origin_s + (_time.monotonic() - self._started_at)

    def _emit(self, payload: Any, time: Time = None) -> None:
        if self._emitter is not None:
            when = time if time is not None else self.now()
            self._emitter.emit(self.job_id, payload, event_time=when, attempt=self.attempt)

    @_safe
    def metric(
        self,
        name: str,
        value: float,
        unit: str | None = None,
        *,
        tags: Mapping[str, Any] | None = None,
        keys: Sequence[str] | None = None,
        step: str | None = None,
        time: Time = None,
    ) -> None:
        """Record a metric value. ``keys`` overrides the registry's comparability keys for this metric."""
        step = step or self._current_step()
        self._emit(
            MetricMeasured(
                name=str(name),
                value=float(value),
                unit=unit,
                tags=_strs(tags),
                comparability_keys=None if keys is None else [str(k) for k in keys],
                step=step,
            ),
            time,
        )

    @_safe
    def declare(
        self,
        provenance: Mapping[str, Any] | None = None,
        *,
        datasets: Sequence[Dataset | Mapping[str, Any] | str] = (),
        config: ConfigRef | None = None,
        software: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        time: Time = None,
    ) -> None:
        """Add provenance; several declarations merge, later keys win."""
        if not (provenance or datasets or config or software or environment):
            return
        self._emit(
            ProvenanceDeclared(
                values=_strs(provenance),
                datasets=[_dataset(d) for d in datasets],
                config=config,
                software=_strs(software),
                environment=dict(environment or {}),
            ),
            time,
        )

    @_safe
    def status(self, status: str, *, reason: str | None = None, time: Time = None) -> None:
        """A scheduler-side state of this job: queued, held, or released (from a hold)."""
        if status not in JOB_WAIT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(JOB_WAIT_STATUSES)}, got {status!r}")
        self._emit(JobStatusChanged(status=status, reason=reason), time)

    @_safe
    def annotate(
        self,
        key: str,
        value: Any,
        *,
        author: str | None = None,
        job_id: str | None = None,
        artifact: str | None = None,
        time: Time = None,
    ) -> None:
        """Annotate this job, another job (``job_id=``) or an artifact (``artifact=URI``)."""
        if job_id and artifact:
            raise ValueError("annotate either a job or an artifact, not both")
        self._emit(
            Annotation(
                key=str(key),
                value=str(value),
                author=author or os.environ.get("USER"),
                target_type="artifact" if artifact else "job",
                target=artifact or job_id,
            ),
            time,
        )

    @_safe
    def used(
        self,
        uri: str,
        *,
        checksum: str | None = None,
        size: int | None = None,
        role: str | None = None,
        time: Time = None,
    ) -> None:
        """Record an input artifact."""
        step = self._current_step()
        self._emit(ArtifactUsed(uri=str(uri), checksum=checksum, size_bytes=size, role=role, step=step), time)

    @_safe
    def produced(
        self,
        uri: str,
        *,
        checksum: str | None = None,
        size: int | None = None,
        role: str | None = None,
        time: Time = None,
    ) -> None:
        """Record an output artifact."""
        step = self._current_step()
        self._emit(ArtifactProduced(uri=str(uri), checksum=checksum, size_bytes=size, role=role, step=step), time)

    @_safe
    def record_step(
        self,
        name: str,
        status: str,
        *,
        start: Time,
        end: Time,
        attempt: int = 1,
        exception_type: str | None = None,
        exception_message: str | None = None,
        caveats: Sequence[str] = (),
    ) -> None:
        """A step that already ran (a test, a task read from a log): StepStarted at ``start``, StepFinished with
        ``status`` at ``end``. The message is redacted and cut like an exception's."""
        if status not in STEP_STATUSES:  # checked before anything is sent: no step left half recorded
            raise ValueError(f"status must be one of {', '.join(STEP_STATUSES)}, got {status!r}")
        message = None if exception_message is None else redact_text(exception_message)[:_MESSAGE_LIMIT]
        self._emit(StepStarted(name=name, step_attempt=attempt, parent_step=self._current_step()), start)
        finished = StepFinished(
            name=name,
            step_attempt=attempt,
            status=status,
            exception_type=exception_type,
            exception_message=message,
            caveats=[str(c) for c in caveats],
        )
        self._emit(finished, end)

    @contextlib.contextmanager
    def step(self, name: str, attempt: int = 1) -> Iterator[Step]:
        """``with job.step("calibrate") as s:`` records StepStarted/StepFinished around the block."""
        step = Step(self, name, attempt, self._current_step())
        step.__enter__()
        try:
            yield step
        except BaseException as exc:
            step.__exit__(type(exc), exc, exc.__traceback__)
            raise
        step.__exit__(None, None, None)
