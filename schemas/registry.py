"""Loading the event schemas and knowing every writer schema we can read.

``avro/`` holds the current schema, one named type per file (``<fullname>.avsc``). ``released/`` holds the
fully expanded envelope of every released version; readers resolve events written with any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from jobprov.errors import SchemaCompatibilityError
from jobprov.schemas.canonical import canonical_form, crc64_avro, load_expanded

NAMESPACE = "jobprov.v1"
ENVELOPE = f"{NAMESPACE}.Event"

Schema = dict[str, Any]


def schema_dir() -> Path:
    return Path(str(resources.files("jobprov.schemas") / "avro"))


def released_dir() -> Path:
    return Path(str(resources.files("jobprov.schemas") / "released"))


def load_envelope(directory: Path | None = None) -> Schema:
    """The envelope schema of a directory of .avsc files, with every named reference expanded, unparsed."""
    directory = directory or schema_dir()
    path = directory / f"{ENVELOPE}.avsc"
    if not path.exists():
        raise SchemaCompatibilityError(f"{directory}: no {path.name}")
    return load_expanded(directory, ENVELOPE)


def fingerprint_of(schema: Schema) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint used by Avro single-object encoding (little-endian, per the spec)."""
    return crc64_avro(canonical_form(schema).encode())


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    schema: Schema  # as written in the .avsc files, references expanded
    fingerprint: bytes

    @cached_property
    def parsed(self) -> Any:
        """fastavro's parsed form, for its reader and writer (imported on first use: the emitter's hot path
        encodes without fastavro, and a job should not pay for loading it)."""
        from fastavro.schema import parse_schema

        try:
            return parse_schema(self.schema)
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise SchemaCompatibilityError(f"schema {self.name}: {exc}") from exc


@cache
def current() -> SchemaVersion:
    schema = load_envelope()
    return SchemaVersion("current", schema, fingerprint_of(schema))


@cache
def known_versions() -> dict[bytes, SchemaVersion]:
    """Every writer schema this reader can resolve, by fingerprint: the released ones and the current one."""
    versions: dict[bytes, SchemaVersion] = {}
    directory = released_dir()
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        versions[fingerprint_of(schema)] = SchemaVersion(path.stem, schema, fingerprint_of(schema))
    cur = current()
    versions.setdefault(cur.fingerprint, cur)
    return versions
