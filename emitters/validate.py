"""What the emitter refuses to send: values the pipeline could not store or fold, each named with its rule.

An event the fold cannot take would otherwise travel to a dead-letter topic while the job believes it was
recorded. The emitter checks the few values a caller controls and the pipeline cannot hold:

- event times: between 1900-01-01 and 2299-12-31 UTC (the range of the store's DateTime64(3) columns);
- metric values: finite numbers (NaN and +-Inf have no place on a chart or in a regression test);
- metric names: non-empty, without control characters (they are labels, shown and typed by people);
- a job's end recorded through the Python API: a status of ``JOB_STATUSES``, an exit code and a signal that
  fit the schema's 32-bit ints (a signal is >= 1); a host named to it (``host=``): non-empty, without control
  characters.

``check_event`` raises :class:`~jobprov.errors.InvalidEventError` (a ``ValueError``) with the rule. The
emitter calls it for every event and, as everything else in the emitter, never lets it reach the job: a
rejected event is counted and reported when the emitter closes. ``jobprov emit`` calls it first and turns it
into a usage error naming the input. ``check_import`` checks the values a backfill passes to the Python API
(:class:`jobprov.emitters.job.Job`) with the same rules, before any event of the job is sent.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import InvalidEventError
from jobprov.schemas.models import JOB_STATUSES, MetricMeasured

MIN_TIME_MS = int(datetime(1900, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_TIME_MS = int(datetime(2300, 1, 1, tzinfo=UTC).timestamp() * 1000)  # exclusive
TIME_RULE = "event times must lie between 1900-01-01 and 2299-12-31 UTC"
METRIC_VALUE_RULE = "metric values must be finite numbers (no NaN or infinity)"
METRIC_NAME_RULE = "metric names must be non-empty and free of control characters"
STATUS_RULE = f"a job's status must be one of {', '.join(JOB_STATUSES)}"
CODE_RULE = "exit codes and signals must be whole numbers that fit 32 bits (a signal is >= 1)"
HOST_RULE = "a host must be non-empty and free of control characters"
ORDER_RULE = "a job is submitted before it starts and starts before it finishes"
_INT32 = (-(2**31), 2**31 - 1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_time_ms(time_ms: int) -> None:
    if not MIN_TIME_MS <= time_ms < MAX_TIME_MS:
        raise InvalidEventError(f"{TIME_RULE}; got {time_ms / 1000:g} epoch seconds")


def _check_metric(payload: MetricMeasured) -> None:
    name = payload.name
    if not name or _CONTROL.search(name):
        raise InvalidEventError(f"{METRIC_NAME_RULE}; got {name!r}")
    value = payload.value
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidEventError(f"{METRIC_VALUE_RULE}; metric {name!r} got {value!r}")


def check_status(status: object) -> None:
    if status not in JOB_STATUSES:
        raise InvalidEventError(f"{STATUS_RULE}; got {status!r}")


def check_code(name: str, value: object) -> None:
    """``name`` (exit_code or signal) is None or a 32-bit whole number (a signal >= 1)."""
    if value is None:
        return
    low = 1 if name == "signal" else _INT32[0]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= _INT32[1]:
        raise InvalidEventError(f"{CODE_RULE}; {name} got {value!r}")


def check_host(host: object) -> None:
    if not isinstance(host, str) or not host or _CONTROL.search(host):
        raise InvalidEventError(f"{HOST_RULE}; got {host!r}")


_CHECKS = {MetricMeasured: _check_metric}


def check_event(payload: Any, time_ms: int | None = None) -> None:
    """Raise InvalidEventError if the pipeline could not take this payload at this time (epoch ms)."""
    if time_ms is not None:
        check_time_ms(time_ms)
    check = _CHECKS.get(payload.__class__)
    if check is not None:
        check(payload)


def check_import(*, submitted_s: float | None = None, started_s: float | None = None, host: object = None) -> None:
    """The backfill arguments of a job (epoch seconds, host): each time in the store's range, submitted no later
    than started, a host as :func:`check_host` wants it (None: not given). Raises InvalidEventError naming the
    argument."""
    for name, seconds in (("submitted", submitted_s), ("time", started_s)):
        if seconds is not None:
            try:
                check_time_ms(int(seconds * 1000))
            except InvalidEventError as exc:
                raise InvalidEventError(f"{name}: {exc}") from None
    if submitted_s is not None and started_s is not None and submitted_s > started_s:
        raise InvalidEventError(f"submitted: {ORDER_RULE}; submitted {submitted_s:g} is after the start {started_s:g}")
    if host is not None:
        try:
            check_host(host)
        except InvalidEventError as exc:
            raise InvalidEventError(f"host: {exc}") from None


__all__ = [
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "TIME_RULE",
    "check_code",
    "check_event",
    "check_host",
    "check_import",
    "check_status",
    "check_time_ms",
]
