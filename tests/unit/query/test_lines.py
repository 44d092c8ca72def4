"""Series lines held as columns: times in epoch milliseconds made datetimes exactly, points on demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jobprov.query.lines import Line, Point, from_millis, iso_millis
from jobprov.query.store import to_plain

# Years 1900 to 2200: every time a store can hold for a job, and then some.
MILLIS = st.integers(min_value=-2_208_988_800_000, max_value=7_258_118_400_000)


@given(MILLIS)
def test_milliseconds_become_the_exact_aware_datetime(millis: int) -> None:
    when = from_millis(millis)
    assert when.tzinfo is UTC
    assert (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) == millis
    assert when.microsecond % 1000 == 0
    assert iso_millis(millis) == to_plain(when)


def test_a_line_gives_points_and_its_document() -> None:
    line = Line(
        {"dataset": "hsc"}, "b1", "mas", [1_780_000_000_123, 1_780_000_060_000], [1.5, 2.5], ["j1", "j2"], ["e1", "e2"]
    )
    first = Point(datetime(2026, 5, 28, 20, 26, 40, 123_000, tzinfo=UTC), 1.5, "j1", "e1")
    assert len(line) == 2
    assert line.point(0) == first
    assert line.points == [first, Point(datetime(2026, 5, 28, 20, 27, 40, tzinfo=UTC), 2.5, "j2", "e2")]
    assert line.document() == {
        "label": {"dataset": "hsc"},
        "bucket": "b1",
        "unit": "mas",
        "times_ms": [1_780_000_000_123, 1_780_000_060_000],
        "values": [1.5, 2.5],
        "job_ids": ["j1", "j2"],
        "event_ids": ["e1", "e2"],
    }
    assert iso_millis(1_780_000_000_123) == "2026-05-28T20:26:40.123000+00:00"
