"""Our schema expansion, Parsing Canonical Form and CRC-64-AVRO agree with fastavro on every shipped schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from jobprov.errors import SchemaCompatibilityError
from jobprov.schemas import registry
from jobprov.schemas.canonical import canonical_form, crc64_avro, load_expanded


def _fastavro_expanded(directory: Path) -> object:
    return json.loads(json.dumps(load_schema(str(directory / f"{registry.ENVELOPE}.avsc"), _write_hint=False)))


def _schemas() -> list[object]:
    released = [json.loads(p.read_text()) for p in sorted(registry.released_dir().glob("*.avsc"))]
    return [registry.load_envelope(), *released]


def test_expansion_matches_fastavro_load_schema() -> None:
    directory = registry.schema_dir()
    assert load_expanded(directory, registry.ENVELOPE) == _fastavro_expanded(directory)


@pytest.mark.parametrize("index", range(2))
def test_canonical_form_and_fingerprint_match_fastavro(index: int) -> None:
    schema = _schemas()[index]
    canonical = to_parsing_canonical_form(schema)
    assert canonical_form(schema) == canonical
    assert crc64_avro(canonical.encode()) == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_canonical_form_of_the_spec_cases() -> None:
    assert canonical_form({"type": "int", "logicalType": "date"}) == '"int"'
    fields = [
        {"name": "f", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "default": "A"},
        {"name": "g", "type": "E"},
        {"name": "h", "type": {"type": "fixed", "name": "F", "size": 4}},
    ]
    schema = {"type": "record", "name": "R", "namespace": "a.b", "doc": "x", "fields": fields}
    assert canonical_form(schema) == (
        '{"name":"a.b.R","type":"record","fields":[{"name":"f","type":{"name":"a.b.E","type":"enum",'
        '"symbols":["A","B"]}},{"name":"g","type":"a.b.E"},{"name":"h","type":{"name":"a.b.F","type":"fixed",'
        '"size":4}}]}'
    )
    assert canonical_form(schema) == to_parsing_canonical_form(schema)


def test_crc64_of_the_empty_input_is_the_spec_seed() -> None:
    assert crc64_avro(b"") == (0xC15D213AA4D7A795).to_bytes(8, "little")


def test_an_unknown_reference_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / f"{registry.ENVELOPE}.avsc").write_text(
        json.dumps(
            {"type": "record", "name": "Event", "namespace": "jobprov.v1", "fields": [{"name": "p", "type": "Nope"}]}
        )
    )
    with pytest.raises(SchemaCompatibilityError, match=r"jobprov\.v1\.Nope"):
        registry.load_envelope(tmp_path)


def test_the_emitter_loads_no_fastavro() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from jobprov.emitters.emitter import create_emitter\n"
        "from jobprov.settings import load_emitter_settings\n"
        "e = create_emitter(load_emitter_settings({'url': 'noop://'}, env={}))\n"
        "e.emit('j', __import__('jobprov.schemas.models', fromlist=['x']).Heartbeat(interval_ms=1)); e.close()\n"
        "print('fastavro' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
