"""Close matches for a name the store does not know."""

from __future__ import annotations

from jobprov.query.names import close_matches, unknown


def test_a_difference_of_case_is_the_only_match() -> None:
    assert close_matches("am1", ["AM1", "PA1", "TE1"]) == ["AM1"]


def test_typos_find_the_close_names_and_nothing_far() -> None:
    assert close_matches("AM2", ["AM1", "TE1", "validate"]) == ["AM1"]
    assert close_matches("datset", ["dataset", "band", "config.hash"]) == ["dataset"]
    assert close_matches("zzz", ["AM1", "PA1"]) == []


def test_the_message_names_matches_then_the_known_names_then_a_count() -> None:
    assert str(unknown("metric", "AM2", ["AM1"])) == "unknown metric 'AM2': did you mean AM1?"
    assert str(unknown("metric", "zzz", ["AM1", "PA1"])) == "unknown metric 'zzz': known: AM1, PA1"
    assert str(unknown("metric", "zzz", [f"M{i}" for i in range(20)])) == "unknown metric 'zzz': 20 are known"
    assert str(unknown("metric", "AM1", [])) == "unknown metric 'AM1': there is no metric yet"
    preferred = unknown("attribute", "status", ["job.status", "stats"], prefer=["job.status"])
    assert str(preferred).startswith("unknown attribute 'status': did you mean job.status or")
