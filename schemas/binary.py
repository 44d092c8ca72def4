"""Fast Avro binary encoding and decoding of our model objects, generated from the .avsc at load time.

fastavro spends about a microsecond per field on small records (its per-call setup and union matching
dominate), which made encoding the emitter's bottleneck and decoding replay's. ``codegen`` turns each record
schema into one straight-line function that reads model attributes directly (no dict conversion). The
output is the standard Avro binary encoding: ``tests/unit/schemas/test_binary.py`` checks it byte for byte
against fastavro for every payload type and for generated data, and the decoder against fastavro's reader.
Events written with an older schema go through fastavro's schema resolution instead (see wire.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobprov.errors import SerializationError
from jobprov.schemas.codegen import (
    SMALL,
    STRINGS,
    DecoderBuilder,
    Encoder,
    EncoderBuilder,
    Out,
    Truncated,
    encode_long,
    encode_string,
    full_name,
    timestamp_millis,
)

__all__ = ["EnvelopeEncoder", "encode_long", "model_decoder", "record_encoder", "timestamp_millis"]


def record_encoder(schema: dict[str, Any]) -> Callable[[Any], bytes]:
    """An encoder of model objects for an expanded record schema: ``encode(obj) -> bytes``."""
    namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
    encoder = EncoderBuilder().build(schema, namespace)

    def encode(value: Any) -> bytes:
        out: Out = []
        encoder(value, out)
        return b"".join(out)

    return encode


_HEAD = ("event_id", "job_id", "event_type", "event_time", "emitted_at", "producer", "seq", "attempt", "payload")


class EnvelopeEncoder:
    """Encodes an envelope from its parts, without building the Event object first (the emitter's hot path).

    The producer record is the same for every event of an emitter, so its bytes are computed once; ``prefix``
    (the framing header) starts every result, which spares a copy of the message.
    """

    def __init__(self, schema: dict[str, Any], prefix: bytes = b"") -> None:
        names = tuple(f["name"] for f in schema["fields"])
        if names != _HEAD:
            raise SerializationError(f"envelope fields changed ({names}); update EnvelopeEncoder")
        builder = EncoderBuilder()
        namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
        self._prefix = prefix
        self._producer = builder.build(schema["fields"][5]["type"], namespace)
        branches = schema["fields"][8]["type"]
        self._payloads: dict[str, tuple[bytes, Encoder]] = {}
        for i, branch in enumerate(branches):
            encoder = builder.build(branch, namespace)
            full = branch if isinstance(branch, str) else full_name(branch, namespace)
            self._payloads[full] = (SMALL[i], encoder)
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
        if emitted_ms != self._last_ms:
            self._last_ms = emitted_ms
            self._last_ms_bytes = encode_long(emitted_ms)
        cached = STRINGS.get
        eid = event_id.encode()  # unique per event: not worth caching
        out: Out = [
            self._prefix,
            SMALL[len(eid)] if len(eid) < 1024 else encode_long(len(eid)),
            eid,
            cached(job_id) or encode_string(job_id),
            cached(event_type) or encode_string(event_type),
            self._last_ms_bytes if event_time_ms == emitted_ms else encode_long(event_time_ms),
            self._last_ms_bytes,
            self._producer_bytes,
            SMALL[seq] if 0 <= seq < 1024 else encode_long(seq),
            SMALL[attempt] if 0 <= attempt < 1024 else encode_long(attempt),
            tag,
        ]
        encoder(payload, out)
        return b"".join(out)


def model_decoder(schema: dict[str, Any], classes: dict[str, type[Any]]) -> Callable[[bytes, int], Any]:
    """``decode(buf, offset) -> model object`` for an expanded record schema; raises on malformed input
    (SerializationError, or ValueError/IndexError/struct.error, which callers wrap) and on trailing bytes."""
    namespace = schema.get("namespace") or str(schema["name"]).rpartition(".")[0]
    decoder = DecoderBuilder(classes).build(schema, namespace)

    def decode(buf: bytes, offset: int) -> Any:
        try:
            value, pos = decoder(buf, offset)
        except Truncated as exc:
            raise SerializationError(f"undecodable body: {exc}") from exc
        if pos != len(buf):
            raise SerializationError(f"{len(buf) - pos} trailing bytes after the record")
        return value

    return decode
