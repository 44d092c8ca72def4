"""The hand-built encoder must produce exactly fastavro's bytes, for every payload type and random data."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many

from jobprov.errors import SerializationError
from jobprov.schemas import registry
from jobprov.schemas.binary import EnvelopeEncoder, encode_long, record_encoder
from jobprov.schemas.models import Event, from_avro


def _fastavro(record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, registry.current().parsed, record)
    return buf.getvalue()


def _random_events(n: int, seed_offset: int = 0) -> list[tuple[bytes, Event]]:
    """Random envelopes as (fastavro bytes, model), via a fastavro round trip to get union branch names."""
    schema = registry.current().schema
    out = []
    for record in generate_many(schema, n):
        data = _fastavro(record)
        decoded = fastavro.schemaless_reader(io.BytesIO(data), registry.current().parsed, None, return_record_name=True)
        out.append((data, from_avro(Event, decoded)))
    return out


@pytest.mark.parametrize(
    "value", [0, 1, -1, 63, 64, -64, -65, 127, 128, 1023, 1024, 2**31 - 1, -(2**31), 2**62, -(2**63)]
)
def test_zigzag_varint_matches_fastavro(value: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", value)
    assert encode_long(value) == buf.getvalue()


def test_record_encoder_matches_fastavro_on_random_envelopes() -> None:
    encode = record_encoder(registry.current().schema)
    events = _random_events(300)
    seen = {e.event_type for _, e in events}
    assert len(seen) >= 10, "random data covers most payload types"
    for data, event in events:
        assert encode(event) == data, event


def test_envelope_encoder_matches_fastavro_on_random_envelopes() -> None:
    encoder = EnvelopeEncoder(registry.current().schema)
    for data, e in _random_events(300):
        body = encoder.encode(
            e.event_id,
            e.job_id,
            e.event_type,
            e.event_time,
            e.emitted_at,
            e.producer,
            e.seq,
            e.attempt,
            e.payload,
        )
        assert body == data


def test_unsupported_types_are_refused_at_build_time() -> None:
    schema = {"type": "record", "name": "X", "namespace": "t", "fields": [{"name": "f", "type": "fixed_thing"}]}
    with pytest.raises(SerializationError, match="fixed_thing"):
        record_encoder(schema)


def test_envelope_encoder_notices_a_changed_envelope() -> None:
    schema = dict(registry.current().schema)
    schema["fields"] = [
        *schema["fields"][:-1],
        {"name": "extra", "type": "string", "default": ""},
        schema["fields"][-1],
    ]
    with pytest.raises(SerializationError, match="envelope fields changed"):
        EnvelopeEncoder(schema)


def test_model_decoder_agrees_with_fastavro_on_random_envelopes() -> None:
    from jobprov.schemas.wire import SINGLE_OBJECT_MARKER, decode_event

    header = SINGLE_OBJECT_MARKER + registry.current().fingerprint
    for data, event in _random_events(300):
        assert decode_event(header + data) == event


def test_model_decoder_rejects_what_fastavro_rejects() -> None:
    from jobprov.schemas.wire import SINGLE_OBJECT_MARKER, decode_event

    header = SINGLE_OBJECT_MARKER + registry.current().fingerprint
    data, _ = _random_events(1)[0]
    for bad in (data[:-1], data + b"\x00", data[: len(data) // 2]):
        with pytest.raises(SerializationError):
            decode_event(header + bad)
