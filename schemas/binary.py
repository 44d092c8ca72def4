"""A fast Avro binary encoder for our model objects, built from the .avsc at load time.

fastavro spends about a microsecond per field on small records (its per-call setup and union matching
dominate), which made encoding the emitter's bottleneck. This module turns the parsed schema into a tree
of small closures that read model attributes directly, skipping the dict conversion too. It supports only
the types the event model uses (null, boolean, int, long, double, string, timestamp-millis, records,
arrays, maps, unions) and refuses anything else at build time. Its output is the standard Avro binary
encoding: ``tests/unit/schemas/test_binary.py`` checks it byte for byte against fastavro for every
payload type and for generated data. Decoding stays with fastavro.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobprov.errors import SerializationError

Out = list[bytes]
Encoder = Callable[[Any, Out], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_pack_double = struct.Struct("<d").pack


def encode_long(n: int) -> bytes:
    """Zigzag varint, as Avro encodes int and long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x4000:  # the common sizes without a loop: lengths, counts, sequence numbers
        return bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [encode_long(i) for i in range(1024)]


def _long(value: int, out: Out) -> None:
    out.append(_SMALL[value] if 0 <= value < 1024 else encode_long(value))


# Job ids, metric names, units and event types repeat from event to event: their encodings are cached.
_STRINGS: dict[str, bytes] = {}
_STRING_CACHE_LIMIT = 4096
_CACHEABLE_LENGTH = 64


def _string(value: str, out: Out) -> None:
    cached = _STRINGS.get(value)
    if cached is not None:
        out.append(cached)
        return
    data = value.encode()
    n = len(data)
    encoded = (_SMALL[n] if n < 1024 else encode_long(n)) + data
    if n <= _CACHEABLE_LENGTH:
        if len(_STRINGS) >= _STRING_CACHE_LIMIT:
            _STRINGS.clear()
        _STRINGS[value] = encoded
    out.append(encoded)


def _double(value: float, out: Out) -> None:
    out.append(_pack_double(value))


def _boolean(value: bool, out: Out) -> None:
    out.append(b"\x01" if value else b"\x00")


def timestamp_millis(value: datetime) -> int:
    # fastavro's arithmetic, so both encoders agree to the millisecond (truncation, not rounding).
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)


def _timestamp(value: datetime | int, out: Out) -> None:
    _long(value if isinstance(value, int) else timestamp_millis(value), out)


def _name(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    return name if "." in name else f"{schema.get('namespace', namespace)}.{name}"


class _Builder:
    def __init__(self) -> None:
        self.named: dict[str, Encoder] = {}

    def build(self, schema: Any, namespace: str) -> Encoder:
        if isinstance(schema, str):
            primitive: dict[str, Encoder] = {
                "string": _string,
                "long": _long,
                "int": _long,
                "double": _double,
                "boolean": _boolean,
            }
            if schema in primitive:
                return primitive[schema]
            if schema == "null":
                return lambda value, out: None
            full = schema if "." in schema else f"{namespace}.{schema}"
            if full in self.named:
                return lambda value, out: self.named[full](value, out)
            raise SerializationError(f"unsupported or unknown Avro type {schema!r}")
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema.get("type")
        if kind == "long" and schema.get("logicalType") == "timestamp-millis":
            return _timestamp
        if kind == "record":
            return self._record(schema, namespace)
        if kind == "array":
            return _sequence(self.build(schema["items"], namespace))
        if kind == "map":
            return _mapping(self.build(schema["values"], namespace))
        if isinstance(kind, str) and "logicalType" not in schema:
            return self.build(kind, namespace)
        raise SerializationError(f"unsupported Avro type {schema!r}")

    def _record(self, schema: dict[str, Any], namespace: str) -> Encoder:
        full = _name(schema, namespace)
        inner = full.rpartition(".")[0]
        fields: list[tuple[str, Encoder]] = []
        self.named[full] = lambda value, out: None  # placeholder for self-references while building
        for f in schema["fields"]:
            fields.append((f["name"], self.build(f["type"], inner)))
        getter = operator.attrgetter(*(name for name, _ in fields))
        encoders = tuple(enc for _, enc in fields)
        single = len(encoders) == 1

        def record(value: Any, out: Out) -> None:
            values = getter(value)
            if single:
                encoders[0](values, out)
                return
            for enc, field_value in zip(encoders, values, strict=True):
                enc(field_value, out)

        self.named[full] = record
        return record

    def _union(self, branches: list[Any], namespace: str) -> Encoder:
        encoders = [self.build(b, namespace) for b in branches]
        names = [b if isinstance(b, str) else (_name(b, namespace) if b.get("type") == "record" else b["type"])
                 for b in branches]  # fmt: skip
        if len(branches) == 2 and "null" in names:
            null_index = names.index("null")
            other = encoders[1 - null_index]
            null_tag, value_tag = _SMALL[null_index], _SMALL[1 - null_index]

            def optional(value: Any, out: Out) -> None:
                if value is None:
                    out.append(null_tag)
                else:
                    out.append(value_tag)
                    other(value, out)

            return optional
        # A union of records: the branch is the model object's AVRO_NAME.
        tags = {name: (_SMALL[i], encoders[i]) for i, name in enumerate(names)}

        def union(value: Any, out: Out) -> None:
            tag, enc = tags[value.AVRO_NAME]
            out.append(tag)
            enc(value, out)

        return union


def _sequence(item: Encoder) -> Encoder:
    def array(value: list[Any], out: Out) -> None:
        if value:
            _long(len(value), out)
            for element in value:
                item(element, out)
        out.append(b"\x00")

    return array


def _mapping(item: Encoder) -> Encoder:
    def mapping(value: dict[str, Any], out: Out) -> None:
        if value:
            _long(len(value), out)
            for key, element in value.items():
                _string(key, out)
                item(element, out)
        out.append(b"\x00")

    return mapping


def record_encoder(schema: dict[str, Any]) -> Callable[[Any], bytes]:
    """An encoder of model objects for an expanded record schema: ``encode(obj) -> bytes``."""
    namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
    encoder = _Builder().build(schema, namespace)

    def encode(value: Any) -> bytes:
        out: Out = []
        encoder(value, out)
        return b"".join(out)

    return encode


_HEAD = ("event_id", "job_id", "event_type", "event_time", "emitted_at", "producer", "seq", "attempt", "payload")


class EnvelopeEncoder:
    """Encodes an envelope from its parts, without building the Event object first (the emitter's hot path).

    The producer record is the same for every event of an emitter, so its bytes are computed once.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        names = tuple(f["name"] for f in schema["fields"])
        if names != _HEAD:
            raise SerializationError(f"envelope fields changed ({names}); update EnvelopeEncoder")
        builder = _Builder()
        namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
        self._producer = builder.build(schema["fields"][5]["type"], namespace)
        branches = schema["fields"][8]["type"]
        self._payloads: dict[str, tuple[bytes, Encoder]] = {}
        for i, branch in enumerate(branches):
            encoder = builder.build(branch, namespace)
            full = branch if isinstance(branch, str) else _name(branch, namespace)
            self._payloads[full] = (_SMALL[i], encoder)
        self._last_producer: Any = None
        self._producer_bytes = b""
        # Consecutive events mostly share their millisecond: keep the last timestamp's encoding.
        self._last_ms = -1
        self._last_ms_bytes = b""

    def encode(
        self,
        event_id: str,
        job_id: str,
        event_type: str,
        event_time_ms: int,
        emitted_ms: int,
        producer: Any,
        seq: int,
        attempt: int,
        payload: Any,
    ) -> bytes:
        if producer is not self._last_producer:
            parts: Out = []
            self._producer(producer, parts)
            self._producer_bytes = b"".join(parts)
            self._last_producer = producer
        tag, encoder = self._payloads[payload.AVRO_NAME]
        out: Out = []
        _string(event_id, out)
        _string(job_id, out)
        _string(event_type, out)
        if emitted_ms != self._last_ms:
            self._last_ms = emitted_ms
            self._last_ms_bytes = encode_long(emitted_ms)
        out.append(self._last_ms_bytes if event_time_ms == emitted_ms else encode_long(event_time_ms))
        out.append(self._last_ms_bytes)
        out.append(self._producer_bytes)
        _long(seq, out)
        _long(attempt, out)
        out.append(tag)
        encoder(payload, out)
        return b"".join(out)


# --- decoding ---------------------------------------------------------------------------------------------
#
# The mirror of the encoder, for events written with the current schema (the common case): it reads the
# binary encoding straight into model objects. Events written with an older schema go through fastavro's
# schema resolution instead (see wire.py). A decoder is ``decode(buf, pos) -> (value, new_pos)``.

Decoder = Callable[[bytes, int], tuple[Any, int]]
_unpack_double = struct.Struct("<d").unpack_from


class _Truncated(Exception):
    pass


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = _read_long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise _Truncated("string runs past the end")
    return buf[pos:end].decode(), end


def _read_double(buf: bytes, pos: int) -> tuple[float, int]:
    return _unpack_double(buf, pos)[0], pos + 8


def _read_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    b = buf[pos]
    if b > 1:
        raise ValueError(f"boolean byte {b}")
    return b == 1, pos + 1


def _read_timestamp(buf: bytes, pos: int) -> tuple[datetime, int]:
    ms, pos = _read_long(buf, pos)
    return _EPOCH + timedelta(milliseconds=ms), pos


def _read_null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


def _read_blocks(item: Decoder, buf: bytes, pos: int, pairs: bool) -> tuple[Any, int]:
    out_list: list[Any] = []
    out_map: dict[str, Any] = {}
    while True:
        count, pos = _read_long(buf, pos)
        if count == 0:
            return (out_map if pairs else out_list), pos
        if count < 0:  # a block with its byte size first
            count = -count
            _, pos = _read_long(buf, pos)
        if count > len(buf):
            raise _Truncated("block count larger than the message")
        for _ in range(count):
            if pairs:
                key, pos = _read_string(buf, pos)
                out_map[key], pos = item(buf, pos)
            else:
                value, pos = item(buf, pos)
                out_list.append(value)


class _DecoderBuilder:
    def __init__(self, classes: dict[str, type[Any]]) -> None:
        self.classes = classes  # Avro full name -> model class
        self.named: dict[str, Decoder] = {}

    def build(self, schema: Any, namespace: str) -> Decoder:
        if isinstance(schema, str):
            primitive: dict[str, Decoder] = {
                "string": _read_string,
                "long": _read_long,
                "int": _read_long,
                "double": _read_double,
                "boolean": _read_boolean,
                "null": _read_null,
            }
            if schema in primitive:
                return primitive[schema]
            full = schema if "." in schema else f"{namespace}.{schema}"
            if full in self.named:
                return lambda buf, pos: self.named[full](buf, pos)
            raise SerializationError(f"unsupported or unknown Avro type {schema!r}")
        if isinstance(schema, list):
            branches = [self.build(b, namespace) for b in schema]

            def union(buf: bytes, pos: int) -> tuple[Any, int]:
                index, pos = _read_long(buf, pos)
                if not 0 <= index < len(branches):
                    raise ValueError(f"union branch {index} of {len(branches)}")
                return branches[index](buf, pos)

            return union
        kind = schema.get("type")
        if kind == "long" and schema.get("logicalType") == "timestamp-millis":
            return _read_timestamp
        if kind == "record":
            return self._record(schema, namespace)
        if kind in ("array", "map"):
            item = self.build(schema["items" if kind == "array" else "values"], namespace)
            pairs = kind == "map"
            return lambda buf, pos: _read_blocks(item, buf, pos, pairs)
        if isinstance(kind, str) and "logicalType" not in schema:
            return self.build(kind, namespace)
        raise SerializationError(f"unsupported Avro type {schema!r}")

    def _record(self, schema: dict[str, Any], namespace: str) -> Decoder:
        full = _name(schema, namespace)
        inner = full.rpartition(".")[0]
        cls = self.classes.get(full)
        if cls is None:
            raise SerializationError(f"no model class for record {full}")
        self.named[full] = lambda buf, pos: (None, pos)  # placeholder while building
        names = [f["name"] for f in schema["fields"]]
        decoders = [self.build(f["type"], inner) for f in schema["fields"]]
        # Slot descriptors set fields directly: a frozen dataclass's __init__ would go through
        # object.__setattr__ once per field, which costs more than decoding the field.
        setters = [getattr(cls, name).__set__ for name in names]
        plan = tuple(zip(setters, decoders, strict=True))
        new = object.__new__

        def record(buf: bytes, pos: int) -> tuple[Any, int]:
            obj = new(cls)
            for setter, decode in plan:
                value, pos = decode(buf, pos)
                setter(obj, value)
            return obj, pos

        self.named[full] = record
        return record


def model_decoder(schema: dict[str, Any], classes: dict[str, type[Any]]) -> Callable[[bytes, int], Any]:
    """``decode(buf, offset) -> model object`` for an expanded record schema; raises on malformed input
    (SerializationError, or ValueError/IndexError/struct.error, which callers wrap) and on trailing bytes."""
    namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
    decoder = _DecoderBuilder(classes).build(schema, namespace)

    def decode(buf: bytes, offset: int) -> Any:
        try:
            value, pos = decoder(buf, offset)
        except _Truncated as exc:
            raise SerializationError(f"undecodable body: {exc}") from exc
        if pos != len(buf):
            raise SerializationError(f"{len(buf) - pos} trailing bytes after the record")
        return value

    return decode
