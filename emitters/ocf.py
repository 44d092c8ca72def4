"""Reading a spool segment block by block, keeping every readable event of a damaged one.

An Avro object container file is a header (magic, metadata, a 16-byte sync marker) and blocks, each
``count, size, data[size], sync``. The spool writes uncompressed blocks and has no checksum, so what can be
trusted is what is consistent: a block is kept when its ``count`` records decode from exactly ``size`` bytes.

- A block that does not decode (a corrupted byte) is dropped whole: a record decoded before the failure may
  already be garbage, and sending garbage is worse than keeping the bytes aside. Reading resumes at the next
  sync marker, so one bad block costs only that block.
- A block cut short by the end of the file with no sync marker after it (a truncated file, a crash in the
  middle of a write) is a clean prefix: each record that decodes completely from it is kept.
- Every byte range that yielded nothing is reported as damage; a segment with damage is quarantined by the
  drain rather than deleted.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"Obj\x01"
SYNC_SIZE = 16


class _Truncated(Exception):
    """The data ended before a value did."""


@dataclass
class Damage:
    start: int  # byte offsets in the file, end exclusive
    end: int
    reason: str

    def __str__(self) -> str:
        return f"bytes {self.start}-{self.end}: {self.reason}"


@dataclass
class Recovered:
    records: list[dict[str, Any]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: (value, position after it)."""
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise _Truncated("the file ends inside a number")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a number longer than 64 bits")


def _header(buf: bytes) -> tuple[dict[str, bytes], bytes, int]:
    if buf[:4] != MAGIC:
        raise ValueError("not an Avro object container file (bad magic)")
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _long(buf, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _long(buf, pos)  # the block's byte size, unused
        for _ in range(count):
            klen, pos = _long(buf, pos)
            key, pos = buf[pos : pos + klen], pos + klen
            vlen, pos = _long(buf, pos)
            if klen < 0 or vlen < 0 or pos + vlen > len(buf):
                raise _Truncated("the file ends inside the header")
            meta[key.decode()] = buf[pos : pos + vlen]
            pos += vlen
    sync = buf[pos : pos + SYNC_SIZE]
    if len(sync) < SYNC_SIZE:
        raise _Truncated("the file ends inside the header")
    return meta, sync, pos + SYNC_SIZE


def recover(data: bytes, reader_schema: Any) -> Recovered:
    """Every record of the container ``data`` that can be trusted, resolved to ``reader_schema``, and the
    byte ranges that yielded nothing. Never raises on bad data."""
    from fastavro import parse_schema, schemaless_reader
    from fastavro.schema import to_parsing_canonical_form

    out = Recovered()
    if not data:
        return out  # created, never written: nothing was in it
    try:
        meta, sync, pos = _header(data)
        codec = meta.get("avro.codec", b"null").decode()
        if codec not in ("null", "deflate"):
            raise ValueError(f"unsupported codec {codec!r}")
        writer_schema = parse_schema(json.loads(meta["avro.schema"]))
        if to_parsing_canonical_form(writer_schema) == to_parsing_canonical_form(reader_schema):
            reader_schema = None  # the same schema: resolving each record against it costs 4x the decode
    except (ValueError, KeyError, UnicodeDecodeError, _Truncated) as exc:
        out.damage.append(Damage(0, len(data), f"unreadable header: {exc}"))
        return out

    def decode(block: bytes, count: int, partial: bool) -> list[dict[str, Any]]:
        stream = io.BytesIO(block)
        records: list[dict[str, Any]] = []
        for _ in range(count):
            try:
                record = schemaless_reader(stream, writer_schema, reader_schema, return_record_name=True)
            except Exception:
                if partial:
                    return records  # the clean prefix of a torn block
                raise
            if not isinstance(record, dict) or not record.get("event_id"):
                raise ValueError("a record without an event id")
            records.append(record)
        if not partial and stream.tell() != len(block):
            raise ValueError(f"{len(block) - stream.tell()} bytes left over after {count} records")
        return records

    def block_ending_at(first: int, sync_at: int) -> tuple[int, list[dict[str, Any]]] | None:
        """After a bad stretch: the first offset from which a whole block ends exactly at the sync marker at
        ``sync_at``, and its records (a block's start has no marker of its own; its end does)."""
        for offset in range(first, sync_at):
            try:
                count, at = _long(data, offset)
                size, at = _long(data, at)
                if count > 0 and at + size == sync_at:
                    block = data[at:sync_at]
                    return offset, decode(zlib.decompress(block, -15) if codec == "deflate" else block, count, False)
            except Exception:  # noqa: S112 - most offsets are not a block's start; trying each is the point
                continue
        return None

    while pos < len(data):
        start = pos
        try:
            count, pos = _long(data, pos)
            size, pos = _long(data, pos)
            if count < 0 or size < 0:
                raise ValueError("negative block count or size")
            end = pos + size
            if end + SYNC_SIZE > len(data) and data.find(sync, start) < 0:
                # Cut short by the end of the file, and no block after it: keep its complete records.
                if codec != "null":
                    raise _Truncated("a torn compressed block")
                kept = decode(data[pos:end], count, partial=True)
                out.records.extend(kept)
                out.damage.append(Damage(start, len(data), f"torn last block: {len(kept)} of {count} records complete"))
                return out
            block = data[pos:end]
            records = decode(zlib.decompress(block, -15) if codec == "deflate" else block, count, partial=False)
            if data[end : end + SYNC_SIZE] != sync:
                if not records:
                    raise ValueError("no sync marker after the block")
                # The records decoded from exactly ``size`` bytes, so the size was right: only the marker
                # after them is damaged.
                out.damage.append(Damage(end, end + SYNC_SIZE, "damaged sync marker"))
            out.records.extend(records)
            pos = end + SYNC_SIZE
        except Exception as exc:
            reason = "the file ends inside a block header" if isinstance(exc, _Truncated) else f"bad block ({exc})"
            sync_at = data.find(sync, start + 1)
            if sync_at < 0:
                out.damage.append(Damage(start, len(data), reason))
                return out
            found = block_ending_at(start + 1, sync_at)
            if found is None:
                out.damage.append(Damage(start, sync_at + SYNC_SIZE, reason))
            else:
                out.damage.append(Damage(start, found[0], reason))
                out.records.extend(found[1])
            pos = sync_at + SYNC_SIZE
    return out


__all__ = ["Damage", "Recovered", "recover"]
