"""Loading the event schemas and knowing every writer schema we can read.

``avro/`` holds the current schema, one named type per file (``<fullname>.avsc``). ``released/`` holds the
fully expanded envelope of every released version; readers resolve events written with any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from jobprov.errors import SchemaCompatibilityError

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
    try:
        parsed = load_schema(str(path), _write_hint=False)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaCompatibilityError(f"{path}: {exc}") from exc
    # load_schema expands references into a parsed form; canonical JSON keeps it portable.
    return json.loads(json.dumps(parsed))  # type: ignore[no-any-return]


def fingerprint_of(schema: Schema) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint used by Avro single-object encoding (little-endian, per the spec)."""
    canonical = to_parsing_canonical_form(schema)
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    schema: Schema  # as written in the .avsc files
    parsed: Any  # fastavro's parsed form, ready for the writer/reader
    fingerprint: bytes


@cache
def current() -> SchemaVersion:
    schema = load_envelope()
    return SchemaVersion("current", schema, parse_schema(schema), fingerprint_of(schema))


@cache
def known_versions() -> dict[bytes, SchemaVersion]:
    """Every writer schema this reader can resolve, by fingerprint: the released ones and the current one."""
    versions: dict[bytes, SchemaVersion] = {}
    directory = released_dir()
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        versions[fingerprint_of(schema)] = SchemaVersion(
            path.stem, schema, parse_schema(schema), fingerprint_of(schema)
        )
    cur = current()
    versions.setdefault(cur.fingerprint, cur)
    return versions
