"""Wire formats: single-object encoding round trips, fingerprints, bad input, fuzzing, Confluent framing."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro.schema import fingerprint, to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobprov.errors import SerializationError, UnknownSchemaError
from jobprov.schemas import registry, wire
from jobprov.schemas.binary import timestamp_millis
from jobprov.schemas.models import (
    PAYLOAD_TYPES,
    AlertRaised,
    AlertTriaged,
    Annotation,
    ArtifactProduced,
    ArtifactUsed,
    ConfigRef,
    Dataset,
    Event,
    GitInfo,
    Heartbeat,
    JobFinished,
    JobStarted,
    JobStatusChanged,
    JobSubmitted,
    MetricMeasured,
    Producer,
    ProvenanceDeclared,
    ResourceSample,
    StepFinished,
    StepStarted,
    from_millis,
    to_avro,
)

T0 = timestamp_millis(datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=UTC))  # the models hold epoch ms
PRODUCER = Producer(name="jobprov-python", version="0.1.0", instance_id="0b8f3c1e-9a43-4d6c-8d0e-1f2a3b4c5d6e")

PAYLOADS: list[Any] = [
    JobSubmitted(
        name="validate_drp",
        kind="hpc",
        parent_job_id="parent-1",
        workflow_id="wf-7",
        dag_node="isr",
        submitter="alice",
        scheduler_ids={"slurm_job_id": "123456", "slurm_array_task_id": "3"},
        machine="perlmutter",
        requested_nodes=4,
        requested_processes=512,
    ),
    JobStarted(
        host="nid001234",
        os="Linux SUSE 15",
        kernel="5.14.21 x86_64",
        python="3.11.9",
        cwd="/scratch/alice/run",
        command_line=["python", "run.py", "--band", "r"],
        container_image="docker.io/lsstsqre/centos:w_2025_10",
        pid=2**40,
    ),
    ProvenanceDeclared(
        values={"dataset": "testdata_hsc", "band": "r"},
        datasets=[Dataset(name="hsc_rc2", version="w_2025_10", checksum="sha256:ab"), Dataset(name="refcat")],
        config=ConfigRef(hash="sha256:0123", snapshot_uri="file:///cfg/pipeline.yaml"),
        software={"numpy": "2.1.0", "lsst-pipe-base": "w.2025.10"},
        git=GitInfo(commit="3f2a9c1", branch="main", dirty=True, remote="https://github.com/lsst/drp.git"),
        environment={"USER": "alice", "CI_JOB_TOKEN": "[REDACTED]"},
    ),
    ResourceSample(
        cpu_user_s=12.5,
        cpu_system_s=0.25,
        rss_bytes=1 << 33,
        peak_rss_bytes=1 << 34,
        io_read_bytes=1000,
        io_write_bytes=None,
        threads=17,
        processes=3,
    ),
    MetricMeasured(
        name="AM1",
        value=3.2,
        unit="mas",
        tags={"band": "r"},
        comparability_keys=["dataset", "band"],
        step="validate",
    ),
    ArtifactUsed(uri="s3://bucket/raw/1.fits", checksum="md5:ff", size_bytes=2**35, role="raw", step="isr"),
    ArtifactProduced(uri="file:///out/calexp.fits", checksum=None, size_bytes=None, role="calexp", step=None),
    StepStarted(name="isr", step_attempt=2, parent_step="drp"),
    StepFinished(
        name="isr",
        step_attempt=2,
        status="failed",
        exception_type="RuntimeError",
        exception_message="bad pixel mask",
        caveats=["partial_outputs"],
    ),
    Annotation(key="reviewed", value="yes", author="bob", target_type="artifact", target="file:///out/x"),
    Heartbeat(interval_ms=30000),
    JobFinished(
        status="failed", exit_code=1, signal=None, exception_type="ValueError", exception_message="x", duration_ms=1234
    ),
    JobStatusChanged(status="held", reason="node maintenance"),
    AlertRaised(
        alert_id="3f2a9c1e0b8d4e77",
        metric="AM1",
        bucket="b-1",
        last_good_job="nightly-11",
        first_bad_job="nightly-12",
        first_bad_event="00000000-0000-4000-8000-000000000012",
        change_time=T0,
        before=10.0,
        size=1.5,
        label={"dataset": "testdata_hsc", "band": "r"},
        unit="mas",
        relative_size=0.15,
        confidence=0.9999,
        changes=["software.numpy: 1.26.4 → 2.0.1"],
    ),
    AlertTriaged(alert_id="3f2a9c1e0b8d4e77", state="acknowledged", note="numpy 2 upgrade", author="alice"),
]


def make_event(payload: Any, seq: int = 1, *, when: int = T0) -> Event:
    return Event(
        event_id=f"00000000-0000-4000-8000-{seq:012d}",
        job_id="job-42",
        event_type=type(payload).__name__,
        event_time=when,
        emitted_at=when + 7,
        producer=PRODUCER,
        seq=seq,
        attempt=2,
        payload=payload,
    )


EVENTS = [make_event(p, i) for i, p in enumerate(PAYLOADS, 1)]
EVENT_IDS = [type(p).__name__ for p in PAYLOADS]


def test_every_payload_type_is_covered() -> None:
    assert [type(p) for p in PAYLOADS] == list(PAYLOAD_TYPES)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_round_trip(event: Event) -> None:
    data = wire.encode_event(event)
    assert wire.decode_event(data) == event


@pytest.mark.parametrize("payload_type", PAYLOAD_TYPES, ids=lambda c: c.__name__)
def test_round_trip_with_defaults_only(payload_type: type[Any]) -> None:
    """The smallest payload of each type (required fields only) survives too."""
    required: dict[type[Any], dict[str, Any]] = {
        JobSubmitted: {"name": "n", "kind": "batch"},
        JobStarted: {"host": "h", "os": "o", "kernel": "k", "cwd": "/"},
        ProvenanceDeclared: {},
        ResourceSample: {"cpu_user_s": 0.0, "cpu_system_s": 0.0, "rss_bytes": 0, "peak_rss_bytes": 0, "threads": 1},
        MetricMeasured: {"name": "m", "value": -0.0},
        ArtifactUsed: {"uri": "u"},
        ArtifactProduced: {"uri": "u"},
        StepStarted: {"name": "s"},
        StepFinished: {"name": "s", "status": "succeeded"},
        Annotation: {"key": "k", "value": ""},
        Heartbeat: {"interval_ms": 0},
        JobFinished: {"status": "succeeded"},
        JobStatusChanged: {"status": "queued"},
        AlertRaised: {
            "alert_id": "a",
            "metric": "m",
            "bucket": "b",
            "last_good_job": "j1",
            "first_bad_job": "j2",
            "first_bad_event": "e2",
            "change_time": T0,
            "before": 1.0,
            "size": 0.5,
        },
        AlertTriaged: {"alert_id": "a", "state": "fixed"},
    }
    event = make_event(payload_type(**required[payload_type]))
    assert wire.decode_event(wire.encode_event(event)) == event


def test_times_keep_milliseconds_and_utc() -> None:
    when = datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    decoded = wire.decode_event(wire.encode_event(make_event(Heartbeat(interval_ms=1), when=timestamp_millis(when))))
    assert decoded.event_time == 946684799999
    assert from_millis(decoded.event_time) == when
    assert from_millis(decoded.event_time).utcoffset() == timedelta(0)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_single_object_framing(event: Event) -> None:
    data = wire.encode_event(event)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == registry.current().fingerprint
    assert len(registry.current().fingerprint) == 8


def test_fingerprint_matches_the_avro_spec_test_vector() -> None:
    # The Avro spec's CRC-64-AVRO test vector: fingerprint64("null") == 7195948357588979594, written
    # little-endian in single-object encoding.
    expected = (7195948357588979594).to_bytes(8, "little")
    assert bytes.fromhex(fingerprint('"null"', "CRC-64-AVRO")) == expected
    assert registry.fingerprint_of("null") == expected  # type: ignore[arg-type]


def test_current_fingerprint_is_crc64_of_canonical_form() -> None:
    schema = registry.load_envelope()
    canonical = to_parsing_canonical_form(schema)
    assert registry.current().fingerprint == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    assert registry.current().fingerprint in registry.known_versions()


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_split_encoder_is_byte_identical_to_fastavro(event: Event) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, registry.current().parsed, to_avro(event))
    assert wire.encode_event(event)[10:] == buf.getvalue()


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_plain_fastavro_reads_the_body(event: Event) -> None:
    body = wire.encode_event(event)[10:]
    record = fastavro.schemaless_reader(io.BytesIO(body), registry.current().parsed, None)
    assert record["event_id"] == event.event_id
    assert record["event_time"] == from_millis(event.event_time)


# --- bad input ------------------------------------------------------------------------------------------

VALID = wire.encode_event(EVENTS[4])  # MetricMeasured


def _payload_index_offset(data: bytes) -> int:
    """Offset of the payload union index byte in a single-object message."""
    schema = registry.load_envelope()
    head = {**schema, "name": "jobprov.v1.Head", "fields": schema["fields"][:-1]}
    record = to_avro(wire.decode_event(data))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(head), record)
    return 10 + len(buf.getvalue())


def _flip(data: bytes, offset: int, mask: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def test_payload_index_offset_points_at_the_union_index() -> None:
    offset = _payload_index_offset(VALID)
    assert VALID[offset] == 2 * PAYLOAD_TYPES.index(MetricMeasured)


BAD_INPUTS = {
    "empty": (b"", SerializationError),
    "marker only": (b"\xc3\x01", SerializationError),
    "wrong marker": (b"\xc3\x02" + VALID[2:], SerializationError),
    "no marker": (VALID[2:], SerializationError),
    "unknown fingerprint": (VALID[:2] + bytes(8) + VALID[10:], UnknownSchemaError),
    "unknown fingerprint, flipped bit": (_flip(VALID, 5, 0x10), UnknownSchemaError),
    "header only": (VALID[:10], SerializationError),
    "truncated by one byte": (VALID[:-1], SerializationError),
    "truncated in the middle": (VALID[: len(VALID) // 2], SerializationError),
    "trailing garbage": (VALID + b"\x00garbage", SerializationError),
    "one trailing byte": (VALID + b"\x00", SerializationError),
    "union index made odd (negative)": (_flip(VALID, _payload_index_offset(VALID), 0x01), SerializationError),
    "union index out of range": (
        VALID[: _payload_index_offset(VALID)] + bytes([2 * 40]) + VALID[_payload_index_offset(VALID) + 1 :],
        SerializationError,
    ),
    "confluent magic without a codec": (b"\x00\x00\x00\x00\x01" + VALID[10:], SerializationError),
}


@pytest.mark.parametrize(("data", "error"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_raises_serialization_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        wire.decode_event(data)


def test_unknown_fingerprint_is_an_unknown_schema_error_naming_it() -> None:
    bogus = bytes.fromhex("0102030405060708")
    with pytest.raises(UnknownSchemaError, match="0102030405060708"):
        wire.decode_event(VALID[:2] + bogus + VALID[10:])


def test_encode_of_an_unknown_payload_type_raises_serialization_error() -> None:
    record = to_avro(EVENTS[0])
    record["payload"] = ("jobprov.v1.NoSuchThing", {})
    with pytest.raises(SerializationError):
        wire.SingleObjectCodec().encode(record)


# --- fuzzing --------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_or_serialization_error(data: bytes) -> None:
    with contextlib.suppress(SerializationError):
        wire.decode_event(data)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_serialization_error(data)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_body_after_a_valid_header(body: bytes) -> None:
    _decode_or_serialization_error(VALID[:10] + body)


@FUZZ
@given(st.sampled_from(EVENTS), st.data())
def test_fuzz_truncations(event: Event, data: st.DataObject) -> None:
    encoded = wire.encode_event(event)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(SerializationError):
        wire.decode_event(encoded[:cut])


@FUZZ
@given(st.sampled_from(EVENTS), st.data())
def test_fuzz_bit_flips(event: Event, data: st.DataObject) -> None:
    encoded = bytearray(wire.encode_event(event))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(encoded) - 1), st.integers(0, 7)), min_size=1, max_size=4))
    for offset, bit in flips:
        encoded[offset] ^= 1 << bit
    _decode_or_serialization_error(bytes(encoded))


# --- Confluent framing with the in-memory mock registry --------------------------------------------------


@pytest.fixture
def mock_registry() -> Any:
    client = SchemaRegistryClient.new_client({"url": "mock://test"})
    assert type(client).__name__ == "MockSchemaRegistryClient"  # an in-memory registry, no network
    return client


def test_confluent_round_trip(mock_registry: Any) -> None:
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    for event in EVENTS:
        data = wire.encode_event(event, codec)
        assert data[:1] == b"\x00"
        assert struct.unpack(">I", data[1:5]) == (codec.schema_id,)
        assert data[5:] == wire.encode_event(event)[10:]  # the same Avro body as single-object encoding
        assert wire.decode_event(data, codec) == event


def test_confluent_registers_under_topic_value(mock_registry: Any) -> None:
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    assert "jobprov.events-value" in mock_registry.get_subjects()
    registered = mock_registry.get_latest_version("jobprov.events-value")
    assert registered.schema_id == codec.schema_id


def test_confluent_decodes_with_a_fresh_codec_sharing_the_registry(mock_registry: Any) -> None:
    writer = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    reader = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    data = wire.encode_event(EVENTS[2], writer)
    assert wire.decode_event(data, reader) == EVENTS[2]


def test_confluent_unknown_schema_id(mock_registry: Any) -> None:
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    data = wire.encode_event(EVENTS[0], codec)
    unknown = codec.schema_id + 1000
    with pytest.raises(UnknownSchemaError):
        wire.decode_event(b"\x00" + struct.pack(">I", unknown) + data[5:], codec)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x00", b"\x01\x00\x00\x00\x01payload"],
    ids=["empty", "short", "wrong magic"],
)
def test_confluent_bad_frames(mock_registry: Any, data: bytes) -> None:
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    with pytest.raises(SerializationError):
        codec.decode(data)


def test_confluent_codec_reads_single_object_messages_too(mock_registry: Any) -> None:
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    assert wire.decode_event(wire.encode_event(EVENTS[3]), codec) == EVENTS[3]


def _older_envelope() -> dict[str, Any]:
    """A legal earlier version of the envelope: MetricMeasured without its (defaulted) ``step`` field."""
    old = copy.deepcopy(registry.load_envelope())
    payload = next(f for f in old["fields"] if f["name"] == "payload")
    metric = next(b for b in payload["type"] if b["name"] == MetricMeasured.AVRO_NAME)
    metric["fields"] = [f for f in metric["fields"] if f["name"] != "step"]
    return old


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_confluent_decodes_events_written_with_an_older_schema(mock_registry: Any, event: Event) -> None:
    """A reader resolves an event written under an earlier registered schema id to the current model."""
    old = _older_envelope()
    old_id = mock_registry.register_schema("jobprov.events-value", Schema(json.dumps(old), "AVRO"))
    codec = wire.ConfluentCodec("mock://test", "jobprov.events", client=mock_registry)
    assert codec.schema_id != old_id
    record = to_avro(event)
    if isinstance(event.payload, MetricMeasured):
        record["payload"][1].pop("step")
        event = dataclasses.replace(event, payload=dataclasses.replace(event.payload, step=None))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), record)
    data = b"\x00" + struct.pack(">I", old_id) + buf.getvalue()
    assert wire.decode_event(data, codec) == event
