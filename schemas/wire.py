"""Wire formats on Kafka: standard framings only, so any Avro tool can read the topic.

- Avro single-object encoding (default): ``C3 01`` + 8-byte CRC-64-AVRO fingerprint (little-endian) + body.
- Confluent framing (when a schema registry is configured): ``00`` + 4-byte big-endian schema id + body.

A decoder always resolves the writer schema named by the frame to the current reader schema. An unknown
fingerprint or schema id raises :class:`UnknownSchemaError`, which consumers route to dead letters.

fastavro is imported where it is used: an emitter only needs a codec's ``header`` (binary.py encodes), and
a job should not load fastavro for that.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from functools import cached_property
from typing import Any, Protocol

from jobprov.errors import SerializationError, UnknownSchemaError
from jobprov.schemas import registry
from jobprov.schemas.binary import model_decoder
from jobprov.schemas.models import (
    PAYLOAD_BY_AVRO_NAME,
    ConfigRef,
    Dataset,
    Event,
    GitInfo,
    Producer,
    from_avro,
    to_avro,
)

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


class Codec(Protocol):
    """Turns the envelope's dict form into framed bytes and back. ``header`` frames a body encoded with
    the current schema (header + body is a complete message)."""

    @property
    def header(self) -> bytes: ...

    def encode(self, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...


class _SplitEnvelope:
    """Encodes and decodes the current envelope as head fields + union index + payload record.

    That is exactly the Avro binary encoding of the envelope (a record is its fields in order; a union is the
    zigzag branch index followed by the branch), but it spares fastavro's per-branch union matching, which
    costs more than the rest of the event together.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        fields = schema["fields"]
        if fields[-1]["name"] != "payload" or not isinstance(fields[-1]["type"], list):
            raise SerializationError("the envelope's last field must be the payload union")
        from fastavro.schema import parse_schema

        named: dict[str, Any] = {}
        namespace = schema.get("namespace") or schema["name"].rpartition(".")[0]
        head = {"type": "record", "name": "EventHead", "namespace": namespace, "fields": fields[:-1]}
        self.head = parse_schema(head, named_schemas=named)
        self.branches: list[tuple[str, Any]] = []
        for branch in fields[-1]["type"]:
            parsed = parse_schema(branch, named_schemas=named)
            if isinstance(branch, str):
                name = branch
            elif "." in branch["name"]:
                name = branch["name"]
            else:
                name = f"{branch.get('namespace', namespace)}.{branch['name']}"
            self.branches.append((name, parsed if not isinstance(branch, str) else named[branch]))
        self.index = {name: i for i, (name, _) in enumerate(self.branches)}
        # A branch index below 64 is one zigzag varint byte: 2 * index.
        if len(self.branches) > 63:
            raise SerializationError("more than 63 payload types need a multi-byte union index")

    def encode(self, record: dict[str, Any]) -> bytes:
        from fastavro import schemaless_writer

        branch, payload = record["payload"]
        buf = io.BytesIO()
        schemaless_writer(buf, self.head, record)
        index = self.index[branch]
        buf.write(bytes((index << 1,)))
        schemaless_writer(buf, self.branches[index][1], payload)
        return buf.getvalue()

    def decode(self, buf: io.BytesIO) -> dict[str, Any]:
        from fastavro import schemaless_reader

        record = schemaless_reader(buf, self.head, None)
        if not isinstance(record, dict):
            raise ValueError("envelope head is not a record")
        raw = buf.read(1)
        if not raw:
            raise EOFError("no payload")
        index = raw[0] >> 1
        if raw[0] & 1 or index >= len(self.branches):
            raise ValueError(f"bad payload union index byte {raw[0]}")
        name, parsed = self.branches[index]
        record["payload"] = (name, schemaless_reader(buf, parsed, None))
        return record


def _read_body(data: bytes, offset: int, writer: Any, reader: Any, fast: _SplitEnvelope | None) -> dict[str, Any]:
    from fastavro import schemaless_reader

    buf = io.BytesIO(data)
    buf.seek(offset)
    try:
        record: Any = (
            fast.decode(buf) if fast is not None else schemaless_reader(buf, writer, reader, return_record_name=True)
        )
    except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError, ...
        raise SerializationError(f"undecodable body: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(data):
        raise SerializationError(f"{len(data) - buf.tell()} trailing bytes after the record")
    if not isinstance(record, dict):
        raise SerializationError("body is not a record")
    return record


class SingleObjectCodec:
    """Avro single-object encoding with the schemas shipped in this package."""

    def __init__(self) -> None:
        self._current = registry.current()
        self._header = SINGLE_OBJECT_MARKER + self._current.fingerprint
        self._known = registry.known_versions()

    @cached_property
    def _fast(self) -> _SplitEnvelope:
        return _SplitEnvelope(self._current.schema)

    @property
    def header(self) -> bytes:
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            return self._header + self._fast.encode(record)
        except Exception as exc:
            raise SerializationError(f"cannot encode event: {type(exc).__name__}: {exc}") from exc

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MARKER:
            raise SerializationError("not an Avro single-object encoded message (no C3 01 marker)")
        fp = bytes(data[2:10])
        writer = self._known.get(fp)
        if writer is None:
            raise UnknownSchemaError(f"unknown writer schema fingerprint {fp.hex()}")
        fast = self._fast if fp == self._current.fingerprint else None
        return _read_body(data, 10, writer.parsed, self._current.parsed, fast)


class ConfluentCodec:
    """Confluent wire format; the schema is registered under ``<topic>-value`` on first use."""

    def __init__(self, registry_url: str, topic: str, client: Any | None = None) -> None:
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise SerializationError(
                "the Confluent framing needs the schema registry client: pip install 'jobprov[registry]'"
            ) from exc
        import json

        self._current = registry.current()
        self._client = client or SchemaRegistryClient({"url": registry_url})
        self._subject = f"{topic}-value"
        schema = Schema(json.dumps(self._current.schema), "AVRO")
        try:
            self._id = int(self._client.register_schema(self._subject, schema))
        except Exception as exc:
            raise SerializationError(f"cannot register the event schema at {registry_url}: {exc}") from exc
        self._header = CONFLUENT_MAGIC + struct.pack(">I", self._id)
        self._writers: dict[int, Any] = {self._id: self._current.parsed}

    @cached_property
    def _fast(self) -> _SplitEnvelope:
        return _SplitEnvelope(self._current.schema)

    @property
    def schema_id(self) -> int:
        return self._id

    @property
    def header(self) -> bytes:
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            return self._header + self._fast.encode(record)
        except Exception as exc:
            raise SerializationError(f"cannot encode event: {type(exc).__name__}: {exc}") from exc

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < 5 or data[:1] != CONFLUENT_MAGIC:
            raise SerializationError("not a Confluent-framed message (no magic byte 0)")
        (schema_id,) = struct.unpack(">I", data[1:5])
        writer = self._writers.get(schema_id)
        if writer is None:
            import json

            try:
                found = self._client.get_schema(schema_id)
            except Exception as exc:
                raise UnknownSchemaError(f"unknown schema id {schema_id}: {exc}") from exc
            from fastavro.schema import parse_schema

            writer = parse_schema(json.loads(str(found.schema_str)))
            self._writers[schema_id] = writer
        fast = self._fast if schema_id == self._id else None
        return _read_body(data, 5, writer, self._current.parsed, fast)


def decode_any(data: bytes, codec: Codec | None = None) -> dict[str, Any]:
    """Decode a message in either framing; Confluent frames need a codec holding a registry client."""
    if data[:2] == SINGLE_OBJECT_MARKER:
        return (codec if isinstance(codec, SingleObjectCodec) else _default_codec()).decode(data)
    if data[:1] == CONFLUENT_MAGIC and isinstance(codec, ConfluentCodec):
        return codec.decode(data)
    raise SerializationError("unrecognised framing: neither Avro single-object nor Confluent")


_DEFAULT: SingleObjectCodec | None = None


def _default_codec() -> SingleObjectCodec:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SingleObjectCodec()
    return _DEFAULT


def encode_event(event: Event, codec: Codec | None = None) -> bytes:
    return (codec or _default_codec()).encode(to_avro(event))


_RECORD_CLASSES: tuple[Any, ...] = (Event, Producer, Dataset, ConfigRef, GitInfo, *PAYLOAD_BY_AVRO_NAME.values())
_MODEL_CLASSES: dict[str, type[Any]] = {cls.AVRO_NAME: cls for cls in _RECORD_CLASSES}
_model_decode: Callable[[bytes, int], Any] | None = None


def _decode_current(data: bytes, offset: int) -> Event:
    """Straight into model objects, for events written with the current schema (see binary.py)."""
    global _model_decode
    if _model_decode is None:
        _model_decode = model_decoder(registry.current().schema, _MODEL_CLASSES)
    try:
        event: Event = _model_decode(data, offset)
    except SerializationError:
        raise
    except (ValueError, IndexError, struct.error, UnicodeDecodeError, OverflowError) as exc:
        raise SerializationError(f"undecodable body: {type(exc).__name__}: {exc}") from exc
    return event


def decode_event(data: bytes, codec: Codec | None = None) -> Event:
    """Decode framed bytes into an :class:`Event`; raises SerializationError (or UnknownSchemaError)."""
    current = registry.current()
    if data[:2] == SINGLE_OBJECT_MARKER and data[2:10] == current.fingerprint:
        return _decode_current(data, 10)
    if isinstance(codec, ConfluentCodec) and data[:5] == codec.header:
        return _decode_current(data, 5)
    record = decode_any(data, codec)
    try:
        event: Event = from_avro(Event, record)
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"decoded record does not fit the model: {exc}") from exc
    return event
