"""What the emitter refuses to send: values the pipeline could not store or fold, each named with its rule.

An event the fold cannot take would otherwise travel to a dead-letter topic while the job believes it was
recorded. The emitter checks the few values a caller controls and the pipeline cannot hold:

- event times: between 1900-01-01 and 2299-12-31 UTC (the range of the store's DateTime64(3) columns);
- metric values: finite numbers (NaN and +-Inf have no place on a chart or in a regression test);
- metric names: non-empty, without control characters (they are labels, shown and typed by people).

``check_event`` raises :class:`~jobprov.errors.InvalidEventError` (a ``ValueError``) with the rule. The
emitter calls it for every event and, as everything else in the emitter, never lets it reach the job: a
rejected event is counted and reported when the emitter closes. ``jobprov emit`` calls it first and turns it
into a usage error naming the input.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import InvalidEventError
from jobprov.schemas.models import MetricMeasured

MIN_TIME_MS = int(datetime(1900, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_TIME_MS = int(datetime(2300, 1, 1, tzinfo=UTC).timestamp() * 1000)  # exclusive
TIME_RULE = "event times must lie between 1900-01-01 and 2299-12-31 UTC"
METRIC_VALUE_RULE = "metric values must be finite numbers (no NaN or infinity)"
METRIC_NAME_RULE = "metric names must be non-empty and free of control characters"
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


_CHECKS = {MetricMeasured: _check_metric}


def check_event(payload: Any, time_ms: int | None = None) -> None:
    """Raise InvalidEventError if the pipeline could not take this payload at this time (epoch ms)."""
    if time_ms is not None:
        check_time_ms(time_ms)
    check = _CHECKS.get(payload.__class__)
    if check is not None:
        check(payload)


__all__ = ["MAX_TIME_MS", "MIN_TIME_MS", "TIME_RULE", "check_event", "check_time_ms"]
