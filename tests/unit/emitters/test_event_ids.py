"""Event ids are valid RFC 9562 UUIDs, unique within an emitter and across emitters."""

from __future__ import annotations

import uuid

from jobprov.emitters.emitter import EventIds


def test_ids_are_version_8_rfc_uuids() -> None:
    ids = EventIds()
    for _ in range(3):
        parsed = uuid.UUID(ids())
        assert parsed.version == 8
        assert parsed.variant == uuid.RFC_4122


def test_ids_never_repeat_within_an_emitter() -> None:
    ids = EventIds()
    drawn = [ids() for _ in range(100_000)]
    assert len(set(drawn)) == len(drawn)


def test_each_emitter_has_its_own_random_part() -> None:
    prefixes = {EventIds()()[:24] for _ in range(1000)}
    assert len(prefixes) == 1000
