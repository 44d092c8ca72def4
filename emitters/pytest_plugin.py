"""``pytest --jobprov``: a test session recorded as a job, with no code in the project under test.

Registered through the ``pytest11`` entry point, so pytest loads it wherever jobprov is installed; it does nothing
unless ``--jobprov`` is given. Then:

- the session is a job (kind ``ci``, name ``--jobprov-name``, default ``pytest``; id ``--jobprov-job-id`` or a new
  uuid; ``--jobprov-param KEY=VALUE`` adds provenance; inside ``jobprov run`` it joins the wrapping job as a
  step). It finishes ``succeeded`` when the session's exit status is 0 (or 5, no tests collected), else ``failed``
  (``pytest exit status 1 (TESTS_FAILED)``), the status as its exit code, with the metrics ``pytest.passed``,
  ``pytest.failed``, ``pytest.skipped`` and ``pytest.duration`` (s);
- each test is a step named for its node id with the module path dotted (``tests.test_io::test_read[x]``, as
  pytest-benchmark's metrics are named), from the start of its setup to the end of its teardown: ``failed``
  when any phase failed (the exception type and the crash message, redacted and cut), ``skipped`` when skipped
  (pytest's reason as the message; an expected failure is ``skipped`` with message ``xfail: <reason>``), else
  ``succeeded``; a test run again (reruns) is the step's next attempt;
- a number a test reports with ``record_property(name, value)`` or the ``jobprov_metric(name, value, unit=None,
  **tags)`` fixture is a metric ``<step>.<name>`` of the job, recorded in that step.

Events go through the normal emitter (``JOBPROV_URL``..., the spool when the broker is down); nothing here can fail
the session: every hook swallows its own errors, and the session's exit waits at most the emitter's
``flush_timeout_s``. Under pytest-xdist the controller records the session (workers' reports reach it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

_PLUGIN = "jobprov-recorder"
_EXIT_OK = (0, 5)  # all passed; no tests collected


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jobprov", "record the session as a jobprov job")
    group.addoption("--jobprov", action="store_true", help="Record this session as a job (see jobprov docs).")
    group.addoption("--jobprov-job-id", help="The job's id (default: a new uuid).")
    group.addoption("--jobprov-name", default="pytest", help="The job's name (default: pytest).")
    group.addoption(
        "--jobprov-param", action="append", default=[], metavar="KEY=VALUE", help="Provenance of the job (repeatable)."
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("jobprov") and not hasattr(config, "workerinput"):  # xdist workers: the controller records
        config.pluginmanager.register(SessionRecorder(config), _PLUGIN)


@pytest.fixture
def jobprov_metric(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``jobprov_metric("rows_per_s", 1.2e6, unit="1/s", dataset="hsc")``: a metric of this test (a no-op without
    ``--jobprov``)."""
    recorder = request.config.pluginmanager.get_plugin(_PLUGIN)

    def record(name: str, value: float, unit: str | None = None, **tags: Any) -> None:
        if isinstance(recorder, SessionRecorder):
            recorder.metric(request.node.nodeid, name, value, unit, tags)

    return record


def step_name(nodeid: str) -> str:
    """A test's step name: its node id with the module path dotted (``tests/test_x.py::t`` -> ``tests.test_x::t``)."""
    from jobprov.emitters.importers.pytest_benchmark import metric_base

    return metric_base(nodeid)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class _Test:
    start: float = 0.0
    end: float = 0.0
    status: str = "succeeded"
    exception_type: str | None = None
    message: str | None = None
    properties: list[tuple[str, Any]] = field(default_factory=list)


def _failure(report: pytest.TestReport) -> tuple[str | None, str]:
    """(exception type, message) of a failed phase: pytest's crash line (``ValueError: bad``)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = str(getattr(crash, "message", "") or report.longreprtext.strip().splitlines()[-1:] or "failed")
    head, sep, rest = text.partition(": ")
    if sep and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
        return head, rest
    return None, text


def _exit_name(code: int) -> str:
    try:
        return pytest.ExitCode(code).name
    except ValueError:
        return "unknown"


class SessionRecorder:
    """The hooks of an active ``--jobprov`` session (see the module docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.job: Any = None
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}
        self._tests: dict[str, _Test] = {}
        self._attempts: dict[str, int] = {}
        self._started = 0.0
        self.problems: list[str] = []

    def _guard(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # the session never fails because of its recording
            self.problems.append(f"{what}: {type(exc).__name__}: {exc}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        def start() -> None:
            from jobprov.emitters.job import Job

            params = dict(p.partition("=")[::2] for p in self.config.getoption("jobprov_param"))
            self._started = time.time()
            self.job = Job(
                self.config.getoption("jobprov_name"),
                job_id=self.config.getoption("jobprov_job_id"),
                kind="ci",
                provenance={"pytest.rootdir": str(self.config.rootpath), **params},
            ).__enter__()

        self._guard("session start", start)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._guard(f"test {report.nodeid}", lambda: self._phase(report))

    def _phase(self, report: pytest.TestReport) -> None:
        test = self._tests.setdefault(report.nodeid, _Test(start=report.start or time.time()))
        test.end = report.stop or time.time()
        test.properties += [p for p in report.user_properties if p not in test.properties]
        if report.failed and test.status != "failed":
            test.status = "failed"
            test.exception_type, test.message = _failure(report)
        elif report.skipped and test.status == "succeeded":
            # The reason goes with the step, not as a caveat: caveats qualify the job's attempt too.
            test.status = "skipped"
            xfail = getattr(report, "wasxfail", None)
            if xfail is not None:
                test.message = f"xfail: {xfail}" if xfail else "xfail"
            elif isinstance(report.longrepr, tuple):
                test.message = str(report.longrepr[2])
        if report.when == "teardown":
            self._finish(report.nodeid, self._tests.pop(report.nodeid))

    def _finish(self, nodeid: str, test: _Test) -> None:
        if self.job is None:
            return
        name = step_name(nodeid)
        attempt = self._attempts[nodeid] = self._attempts.get(nodeid, 0) + 1
        self.counts[{"succeeded": "passed"}.get(test.status, test.status)] += 1
        self.job.record_step(
            name, test.status, start=test.start, end=test.end, attempt=attempt,
            exception_type=test.exception_type, exception_message=test.message,
        )  # fmt: skip
        for key, value in test.properties:
            if _is_number(value):
                self.job.metric(f"{name}.{key}", float(value), step=name, time=test.end)

    def metric(self, nodeid: str, name: str, value: float, unit: str | None, tags: dict[str, Any]) -> None:
        def record() -> None:
            if self.job is not None:
                step = step_name(nodeid)
                self.job.metric(f"{step}.{name}", float(value), unit, tags=tags, step=step)

        self._guard(f"metric {name}", record)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        def finish() -> None:
            if self.job is None:
                return
            for key, count in self.counts.items():
                self.job.metric(f"pytest.{key}", count)
            self.job.metric("pytest.duration", time.time() - self._started, "s")
            code = int(exitstatus)
            # An exception, not only a status, so that a session joined to a `jobprov run` job fails its step too.
            failure = None if code in _EXIT_OK else SystemExit(f"pytest exit status {code} ({_exit_name(code)})")
            self.job.finish(failure, status="succeeded" if failure is None else "failed", exit_code=code)

        self._guard("session finish", finish)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.job is not None:
            total = sum(self.counts.values())
            terminalreporter.write_line(f"jobprov: recorded job {self.job.job_id} ({total} tests)")
        for problem in self.problems[:5]:
            terminalreporter.write_line(f"jobprov: not recorded: {problem}")
