"""A metric's series held column-wise: one :class:`Line` per bucket (or per chosen provenance keys).

A long series is tens of thousands of points. Holding them as columns (times as epoch milliseconds, values, job
ids, event ids) costs one list per column instead of an object and an aware datetime per point, and its JSON
document is four flat arrays, cheap to write and to read. A :class:`Point` (with its datetime) is made only
for the points a consumer singles out, such as a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobprov.schemas.models import from_millis

__all__ = ["Line", "Point", "from_millis", "iso_millis"]


def iso_millis(millis: int) -> str:
    """Epoch milliseconds as ISO 8601 text, the form every other time in the documents takes."""
    return from_millis(millis).isoformat()


def finite_or_none(values: list[float]) -> list[float] | list[float | None]:
    """A column of numbers with every NaN or infinity as None (JSON null: JSON has no such numbers; older stores
    may hold them, emitters now refuse them). The common case, all finite, is one sum and no copy: a NaN or an
    infinity makes the sum non-finite (a sum that overflows only costs the slow path)."""
    if math.isfinite(sum(values)):
        return values
    return [v if math.isfinite(v) else None for v in values]


@dataclass(slots=True)
class Point:
    time: datetime
    value: float
    job_id: str
    event_id: str


@dataclass
class Line:
    """One series: a bucket (or a group of chosen provenance keys) and its points in time order, as columns
    of equal length: ``times_ms`` (epoch milliseconds, UTC), ``values``, ``job_ids``, ``event_ids``."""

    label: dict[str, str]
    bucket: str | None
    unit: str | None
    times_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times_ms)

    def point(self, index: int) -> Point:
        return Point(from_millis(self.times_ms[index]), self.values[index], self.job_ids[index], self.event_ids[index])

    @property
    def points(self) -> list[Point]:
        """Every point as an object with an aware datetime: convenient for a short line, costly for a long one."""
        return [self.point(i) for i in range(len(self))]

    def document(self) -> dict[str, Any]:
        """The line as the API serves it (the column lists themselves, not copies; non-finite values as None)."""
        return {
            "label": dict(self.label),
            "bucket": self.bucket,
            "unit": self.unit,
            "times_ms": self.times_ms,
            "values": finite_or_none(self.values),
            "job_ids": self.job_ids,
            "event_ids": self.event_ids,
        }
