"""Schema files to one expanded schema, its Parsing Canonical Form and its CRC-64-AVRO fingerprint.

These are small, fixed algorithms of the Avro specification. They live here rather than come from
fastavro so that the in-job emitter can encode events without importing fastavro, which (with the
compression codecs it loads) costs a job more memory and start-up time than the rest of the emitter.
``tests/unit/schemas/test_canonical.py`` checks all three against fastavro on every schema we ship.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobprov.errors import SchemaCompatibilityError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


def _qualify(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_expanded(directory: Path, fullname: str) -> dict[str, Any]:
    """The schema in ``<fullname>.avsc`` with every named type it references read from ``<name>.avsc`` in the
    same directory and written out in full where first used (later uses keep the full name); names are
    fully qualified and ``namespace`` attributes dropped."""
    defined: set[str] = set()

    def load(full: str) -> Any:
        path = directory / f"{full}.avsc"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise SchemaCompatibilityError(f"{directory}: unknown type {full} (no {path.name})") from None
        except (OSError, ValueError) as exc:
            raise SchemaCompatibilityError(f"{path}: {exc}") from exc
        return expand(raw, full.rpartition(".")[0] or None)

    def expand(schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema
            full = _qualify(schema, namespace)
            return full if full in defined else load(full)
        if isinstance(schema, list):
            return [expand(branch, namespace) for branch in schema]
        if not isinstance(schema, dict) or "type" not in schema:
            raise SchemaCompatibilityError(f"not a schema: {schema!r}")
        kind = schema["type"]
        if kind in _NAMED:
            full = _qualify(str(schema["name"]), schema.get("namespace", namespace))
            if full in defined:
                raise SchemaCompatibilityError(f"type {full} defined twice")
            defined.add(full)
            out = {k: v for k, v in schema.items() if k != "namespace"}
            out["name"] = full
            if kind in ("record", "error"):
                inner = full.rpartition(".")[0] or None
                out["fields"] = [{**f, "type": expand(f["type"], inner)} for f in schema["fields"]]
            return out
        if kind == "array":
            return {**schema, "items": expand(schema["items"], namespace)}
        if kind == "map":
            return {**schema, "values": expand(schema["values"], namespace)}
        if isinstance(kind, str) and kind in PRIMITIVES:
            return schema
        return {**schema, "type": expand(kind, namespace)}

    result = load(fullname)
    if not isinstance(result, dict):
        raise SchemaCompatibilityError(f"{fullname} is not a named type")
    return result


_CANONICAL_KEYS = ("name", "type", "fields", "symbols", "items", "values", "size")


def canonical_form(schema: Any, namespace: str | None = None) -> str:
    """The Avro spec's Parsing Canonical Form (PRIMITIVES, FULLNAMES, STRIP, ORDER, STRINGS, WHITESPACE)."""
    seen: set[str] = set()

    def canon(s: Any, ns: str | None) -> str:
        if isinstance(s, str):
            return json.dumps(s if s in PRIMITIVES else _qualify(s, ns))
        if isinstance(s, list):
            return "[" + ",".join(canon(b, ns) for b in s) + "]"
        kind = s["type"]
        if not isinstance(kind, str) or (kind in PRIMITIVES and kind not in _NAMED):
            return canon(kind, ns)  # {"type": "int", ...} -> "int"; {"type": {...}} -> the inner schema
        if kind not in _NAMED and kind not in ("array", "map"):
            return canon(kind, ns)  # a named reference written as {"type": "Name"}
        parts = []
        inner = ns
        if kind in _NAMED:
            full = _qualify(str(s["name"]), s.get("namespace", ns))
            if full in seen:
                return json.dumps(full)
            seen.add(full)
            inner = full.rpartition(".")[0] or None
            parts.append(f'"name":{json.dumps(full)}')
        parts.append(f'"type":{json.dumps(kind)}')
        if kind in ("record", "error"):
            fields = ",".join(
                "{" + f'"name":{json.dumps(f["name"])},"type":{canon(f["type"], inner)}' + "}" for f in s["fields"]
            )
            parts.append(f'"fields":[{fields}]')
        if kind == "enum":
            parts.append(f'"symbols":{json.dumps(s["symbols"], separators=(",", ":"))}')
        if kind == "array":
            parts.append(f'"items":{canon(s["items"], ns)}')
        if kind == "map":
            parts.append(f'"values":{canon(s["values"], ns)}')
        if kind == "fixed":
            parts.append(f'"size":{int(s["size"])}')
        return "{" + ",".join(parts) + "}"

    return canon(schema, namespace)


_EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _table()


def crc64_avro(data: bytes) -> bytes:
    """The spec's 64-bit Rabin fingerprint, as the 8 little-endian bytes single-object encoding carries."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")
