"""The durable spool: OCF segments any Avro tool reads, locking, torn tails, rollover."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from jobprov.emitters.base import Framed
from jobprov.emitters.spool import (
    OPEN,
    SEALED,
    SpoolTransport,
    claim_segments,
    read_segment,
    spool_status,
    write_records,
)
from jobprov.errors import TransportError
from jobprov.schemas import registry, wire
from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import (
    ArtifactProduced,
    ConfigRef,
    Event,
    GitInfo,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    from_avro,
    to_avro,
)

T0 = datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
PRODUCER = Producer(name="jobprov-python", version="0.1.0", instance_id=str(uuid.uuid4()))


def make_event(seq: int, payload: object | None = None) -> Event:
    payload = payload or MetricMeasured(name="AM1", value=seq / 10, unit="mas", tags={"band": "r"})
    return Event(
        event_id=str(uuid.uuid4()),
        job_id="job-1",
        event_type=type(payload).__name__,
        event_time=timestamp_millis(T0 + timedelta(seconds=seq)),
        emitted_at=timestamp_millis(T0 + timedelta(seconds=seq, milliseconds=1)),
        producer=PRODUCER,
        seq=seq,
        attempt=1,
        payload=payload,
    )


def framed(events: list[Event]) -> list[Framed]:
    return [Framed(e.job_id, wire.encode_event(e), e.event_id) for e in events]


def sealed(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(SEALED))


def open_segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(OPEN))


def read_ids(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return [r["event_id"] for r in fastavro.reader(fh)]


def test_segment_is_plain_avro(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 11)]
    spool = SpoolTransport(tmp_path)
    spool.send(framed(events[:4]))
    spool.send(framed(events[4:]))
    report = spool.close(1.0)
    assert report.spooled == 10
    assert report.lost == 0
    assert report.errors == []
    assert report.spool_dir == str(tmp_path)
    [segment] = sealed(tmp_path)
    with segment.open("rb") as fh:
        reader = fastavro.reader(fh)
        records = list(reader)
        writer_schema = reader.writer_schema
    assert [r["event_id"] for r in records] == [e.event_id for e in events]
    assert [r["seq"] for r in records] == list(range(1, 11))
    assert records[0]["event_time"] == T0 + timedelta(seconds=1)
    assert writer_schema["name"] == "jobprov.v1.Event"


def test_spooled_events_round_trip_to_the_model(tmp_path: Path) -> None:
    events = [
        make_event(1),
        make_event(
            2,
            ProvenanceDeclared(
                values={"band": "r"},
                config=ConfigRef(hash="sha256:00", snapshot_uri=None),
                git=GitInfo(commit="abc", branch="main", dirty=False),
            ),
        ),
        make_event(3, ArtifactProduced(uri="file:///out/a.fits", size_bytes=12)),
    ]
    spool = SpoolTransport(tmp_path)
    spool.send(framed(events))
    spool.close(1.0)
    [segment] = sealed(tmp_path)
    with segment.open("rb") as fh:
        contents = read_segment(fh)
    assert contents.torn_tail is None
    assert len(contents.records) == 3
    # The records re-encode to exactly what was spooled.
    for record, event in zip(contents.records, events, strict=True):
        assert wire.SingleObjectCodec().encode(record) == wire.encode_event(event)


def test_read_segment_records_build_model_events(tmp_path: Path) -> None:
    """Records read back from a segment convert to the model, nested optional records included."""
    events = [
        make_event(
            1,
            ProvenanceDeclared(
                values={"band": "r"},
                config=ConfigRef(hash="sha256:00", snapshot_uri="file:///cfg.yaml"),
                git=GitInfo(commit="abc", branch="main", dirty=False),
            ),
        ),
        make_event(2),
    ]
    spool = SpoolTransport(tmp_path)
    spool.send(framed(events))
    spool.close(1.0)
    [segment] = sealed(tmp_path)
    with segment.open("rb") as fh:
        records = read_segment(fh).records
    assert [from_avro(Event, r) for r in records] == events


def test_open_while_writing_sealed_on_close(tmp_path: Path) -> None:
    spool = SpoolTransport(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing until the first event
    spool.send(framed([make_event(1)]))
    [current] = open_segments(tmp_path)
    assert current.name.endswith(".avro.open")
    assert sealed(tmp_path) == []
    assert read_ids(current) != []  # readable while open: every block is flushed and fsync'd
    spool.close(1.0)
    assert open_segments(tmp_path) == []
    [done] = sealed(tmp_path)
    assert done.name == current.name[: -len(OPEN)] + SEALED


def test_close_is_idempotent_and_empty_spool_writes_nothing(tmp_path: Path) -> None:
    spool = SpoolTransport(tmp_path / "spool")
    first = spool.close(1.0)
    second = spool.close(1.0)
    assert first.spooled == second.spooled == 0
    assert list((tmp_path / "spool").iterdir()) == []


def test_claim_skips_a_live_writer(tmp_path: Path) -> None:
    live = SpoolTransport(tmp_path)
    live.send(framed([make_event(1)]))
    try:
        assert [s.path for s in claim_segments(tmp_path)] == []
    finally:
        live.close(1.0)
    claimed = list(claim_segments(tmp_path))
    try:
        assert [s.path for s in claimed] == sealed(tmp_path)
    finally:
        for s in claimed:
            s.release()


def test_claim_takes_a_stale_open_segment(tmp_path: Path) -> None:
    events = [make_event(i) for i in (1, 2)]
    spool = SpoolTransport(tmp_path / "writer")
    spool.send(framed(events))
    spool.close(1.0)
    # What a writer that died mid-segment leaves behind: an .avro.open file whose lock nobody holds.
    [done] = sealed(tmp_path / "writer")
    stale = tmp_path / done.name.replace(SEALED, OPEN)
    done.rename(stale)
    claimed = list(claim_segments(tmp_path))
    try:
        assert [s.path for s in claimed] == [stale]
        contents = read_segment(claimed[0].handle)
        assert [r["event_id"] for r in contents.records] == [e.event_id for e in events]
        assert contents.torn_tail is None
    finally:
        for s in claimed:
            s.release()


def test_claim_holds_the_lock(tmp_path: Path) -> None:
    spool = SpoolTransport(tmp_path)
    spool.send(framed([make_event(1)]))
    spool.close(1.0)
    first = claim_segments(tmp_path)
    segment = next(first)
    try:
        assert list(claim_segments(tmp_path)) == []  # a second drainer gets nothing
    finally:
        segment.release()
        first.close()
    again = list(claim_segments(tmp_path))
    assert len(again) == 1
    again[0].release()


def test_claim_ignores_other_files_and_missing_dirs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "x.avro.tmp").write_text("x")
    assert list(claim_segments(tmp_path)) == []
    assert list(claim_segments(tmp_path / "absent")) == []


def test_torn_tail_keeps_every_complete_record(tmp_path: Path) -> None:
    first = [make_event(i) for i in (1, 2, 3)]
    second = [make_event(i) for i in (4, 5, 6)]
    spool = SpoolTransport(tmp_path)
    spool.send(framed(first))
    [path] = open_segments(tmp_path)
    end_of_first_block = path.stat().st_size
    spool.send(framed(second))
    spool.close(1.0)
    [path] = sealed(tmp_path)
    full = path.stat().st_size
    # A crash in the middle of writing the second block.
    os.truncate(path, end_of_first_block + (full - end_of_first_block) // 2)
    with path.open("rb") as fh:
        contents = read_segment(fh)
    # The first block, and the one record of the second that was written completely before the cut.
    assert [r["event_id"] for r in contents.records] == [e.event_id for e in first + second[:1]]
    assert contents.torn_tail and "torn last block: 1 of 3" in contents.torn_tail


@pytest.mark.parametrize("cut", [1, 8, 16])
def test_torn_sync_marker_is_reported(tmp_path: Path, cut: int) -> None:
    spool = SpoolTransport(tmp_path)
    spool.send(framed([make_event(1)]))
    spool.send(framed([make_event(2)]))
    spool.close(1.0)
    [path] = sealed(tmp_path)
    os.truncate(path, path.stat().st_size - cut)
    with path.open("rb") as fh:
        contents = read_segment(fh)
    assert contents.torn_tail
    assert contents.records[0]["seq"] == 1


def test_rollover_with_tiny_segments(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 6)]
    spool = SpoolTransport(tmp_path, segment_bytes=1)
    for event in events:
        spool.send(framed([event]))
        assert open_segments(tmp_path) == []  # sealed as soon as it is past the size
    report = spool.close(1.0)
    assert report.spooled == 5
    paths = sealed(tmp_path)
    assert len(paths) == 5
    ids = [i for p in paths for i in read_ids(p)]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert spool_status(tmp_path) == {
        "sealed_segments": 5,
        "open_segments": 0,
        "bytes": sum(p.stat().st_size for p in paths),
        "quarantined_segments": 0,
    }


def test_rollover_by_size(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 201)]
    header = 12_000  # the envelope schema in the OCF header
    spool = SpoolTransport(tmp_path, segment_bytes=header + 2_000)
    for i in range(0, 200, 10):
        spool.send(framed(events[i : i + 10]))
    spool.close(1.0)
    paths = sealed(tmp_path)
    assert len(paths) > 1
    assert [i for p in paths for i in read_ids(p)] == [e.event_id for e in events]


def test_events_of_another_schema_are_not_spooled(tmp_path: Path) -> None:
    good = make_event(1)
    other = wire.encode_event(make_event(2))
    other = other[:2] + bytes(8) + other[10:]  # a fingerprint this spool does not write
    spool = SpoolTransport(tmp_path)
    spool.send([*framed([good]), Framed("job-1", other, "evt-other"), Framed("job-1", b"junk", "evt-junk")])
    report = spool.close(1.0)
    assert report.spooled == 1
    assert report.lost == 2
    assert any("evt-other" in e for e in report.errors)
    assert any("evt-junk" in e for e in report.errors)
    [path] = sealed(tmp_path)
    assert read_ids(path) == [good.event_id]


def test_confluent_framed_events_are_spooled_by_body(tmp_path: Path) -> None:
    event = make_event(1)
    body = wire.encode_event(event)[10:]
    spool = SpoolTransport(tmp_path)
    spool.send([Framed(event.job_id, b"\x00\x00\x00\x00\x07" + body, event.event_id)])
    spool.close(1.0)
    [path] = sealed(tmp_path)
    assert read_ids(path) == [event.event_id]


def test_spool_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TransportError, match="cannot create spool directory"):
        SpoolTransport(blocker / "spool")


def test_write_records_round_trip(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(1, 4)]
    path = write_records(tmp_path, [to_avro(e) for e in events])
    assert path.name.endswith(SEALED)
    assert open_segments(tmp_path) == []
    with path.open("rb") as fh:
        contents = read_segment(fh)
    assert contents.torn_tail is None
    assert [from_avro(Event, r) for r in contents.records] == events


def test_write_records_of_read_records(tmp_path: Path) -> None:
    """What a drain keeps (records as read back from a segment) is written again unchanged."""
    events = [
        make_event(1, ProvenanceDeclared(config=ConfigRef(hash="h"), git=GitInfo(commit="c"))),
        make_event(2),
    ]
    spool = SpoolTransport(tmp_path / "a")
    spool.send(framed(events))
    spool.close(1.0)
    [segment] = sealed(tmp_path / "a")
    with segment.open("rb") as fh:
        records = read_segment(fh).records
    (tmp_path / "b").mkdir()
    kept = write_records(tmp_path / "b", records)
    with kept.open("rb") as fh:
        again = read_segment(fh).records
    assert again == records
    assert [r["event_id"] for r in again] == [e.event_id for e in events]


def test_registry_schema_is_the_segment_schema(tmp_path: Path) -> None:
    spool = SpoolTransport(tmp_path)
    spool.send(framed([make_event(1)]))
    spool.close(1.0)
    [path] = sealed(tmp_path)
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
    assert registry.fingerprint_of(schema) == registry.current().fingerprint


# --- damaged segments: every readable event, nothing twice, nothing made up ---------------------------------


def _segment_of_blocks(directory: Path, blocks: int, per_block: int) -> tuple[Path, list[Event], list[int]]:
    """A sealed segment of ``blocks`` blocks; the events and each block's end offset."""
    events = [make_event(i) for i in range(1, blocks * per_block + 1)]
    spool = SpoolTransport(directory)
    ends = []
    for b in range(blocks):
        spool.send(framed(events[b * per_block : (b + 1) * per_block]))
        [path] = open_segments(directory)
        ends.append(path.stat().st_size)
    spool.close(1.0)
    [path] = sealed(directory)
    return path, events, ends


def _read(path: Path) -> tuple[list[str], str | None]:
    with path.open("rb") as fh:
        contents = read_segment(fh)
    return [r["event_id"] for r in contents.records], contents.torn_tail


def test_corrupt_bytes_mid_file_cost_only_their_block(tmp_path: Path) -> None:
    path, events, ends = _segment_of_blocks(tmp_path, blocks=10, per_block=10)
    data = bytearray(path.read_bytes())
    middle = (ends[4] + ends[5]) // 2  # inside the sixth block
    data[middle : middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    ids, damage = _read(path)
    expected = [e.event_id for e in events[:50] + events[60:]]
    assert ids == expected, "every block but the damaged one, in order, once each"
    assert damage is not None and f"bytes {ends[4]}-{ends[5]}" in damage


def test_a_damaged_sync_marker_loses_no_event(tmp_path: Path) -> None:
    path, events, ends = _segment_of_blocks(tmp_path, blocks=4, per_block=5)
    data = bytearray(path.read_bytes())
    data[ends[1] - 10] ^= 0xFF  # inside the sync marker closing the second block
    path.write_bytes(bytes(data))
    ids, damage = _read(path)
    assert ids == [e.event_id for e in events]
    assert damage is not None and "sync marker" in damage


@pytest.mark.parametrize("garbage", [b"\x00" * 64, os.urandom(64), b"\x02\x80\x80\x80\x80\x01"])
def test_garbage_between_blocks_is_skipped(tmp_path: Path, garbage: bytes) -> None:
    path, events, ends = _segment_of_blocks(tmp_path, blocks=3, per_block=4)
    data = path.read_bytes()
    path.write_bytes(data[: ends[0]] + garbage + data[ends[0] :])
    ids, damage = _read(path)
    assert ids == [e.event_id for e in events]
    assert damage is not None


def test_every_truncation_keeps_every_complete_record(tmp_path: Path) -> None:
    path, events, ends = _segment_of_blocks(tmp_path, blocks=3, per_block=5)
    data = path.read_bytes()
    all_ids = [e.event_id for e in events]
    previous = 0
    cuts = set(range(ends[0] - 200, len(data), 5)) | {end + d for end in ends for d in (-1, 0, 1)}
    for cut in sorted(c for c in cuts if c < len(data)):
        path.write_bytes(data[:cut])
        ids, damage = _read(path)
        assert ids == all_ids[: len(ids)], f"cut at {cut}: a prefix, in order, no duplicates"
        assert len(ids) >= previous, f"cut at {cut}: fewer events than a shorter file gave"
        complete_blocks = sum(1 for end in ends if end <= cut)
        assert len(ids) >= complete_blocks * 5, f"cut at {cut}: lost a complete block"
        assert (damage is None) == (cut in ends), f"cut at {cut}: damage reported only for a torn file"
        previous = len(ids)
    path.write_bytes(data)
    assert _read(path) == (all_ids, None)


@pytest.mark.parametrize("content", [b"", b"Obj"])
def test_a_segment_without_a_whole_header(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / f"x{SEALED}"
    path.write_bytes(content)
    ids, damage = _read(path)
    assert ids == []
    assert (damage is None) == (content == b""), "an empty file held nothing; a torn header is damage"


def test_spool_is_private_to_its_owner(tmp_path: Path) -> None:
    """The spool may hold what redaction missed: every level it creates is 0700, every segment 0600."""
    old = os.umask(0o022)  # the usual umask, which would give 0755 and 0644
    try:
        root = tmp_path / "state" / "jobprov" / "spool"
        spool = SpoolTransport(root)
        spool.send(framed([make_event(1)]))
        [live] = open_segments(root)
        assert live.stat().st_mode & 0o777 == 0o600
        spool.close(1.0)
        kept = write_records(root, [to_avro(make_event(2))])
    finally:
        os.umask(old)
    for level in (root, root.parent, root.parent.parent):
        assert level.stat().st_mode & 0o777 == 0o700, level
    for path in [*sealed(root), kept]:
        assert path.stat().st_mode & 0o777 == 0o600, path
