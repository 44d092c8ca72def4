"""Schema evolution checker: ``jobprov schemas check OLD_DIR NEW_DIR``.

The rules (docs/schema-evolution.md):
1. Add fields only with defaults.
2. Never rename or remove a field (a removed field breaks old readers that have no default for it).
3. Never change a field's type, not even by an Avro promotion (int->long, float->double): old readers
   cannot read the wider type.
4. New union branches are allowed (old readers dead-letter events of the new branch; nothing else changes).

Two checks back each other: a structural diff that names the offending field, and real resolution: data is
generated from the old schema and read with the new one (backward), and generated from the new schema with
only old union branches and read with the old one (forward).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema
from fastavro.utils import generate_many

from jobprov.schemas.registry import Schema, load_envelope


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "union"
    if isinstance(t, dict):
        if t.get("type") in ("record", "enum", "fixed"):
            return str(t.get("name"))
        return str(t.get("type"))
    return repr(t)


def _named(t: Any) -> dict[str, Any]:
    return t if isinstance(t, dict) else {"type": t}


def _compare(old: Any, new: Any, path: str, out: list[Problem]) -> None:
    old_name, new_name = _type_name(old), _type_name(new)
    if old_name == "union" or new_name == "union":
        old_branches = old if isinstance(old, list) else [old]
        new_branches = new if isinstance(new, list) else [new]
        new_by_name = {_type_name(b): b for b in new_branches}
        for branch in old_branches:
            name = _type_name(branch)
            if name not in new_by_name:
                out.append(Problem(path, f"union branch {name} was removed"))
            else:
                _compare(branch, new_by_name[name], f"{path}<{name.rsplit('.', 1)[-1]}>", out)
        return
    if old_name != new_name:
        # Named types are compared by their structure; a renamed record is a different type.
        out.append(Problem(path, f"type changed from {old_name} to {new_name}"))
        return
    o, n = _named(old), _named(new)
    kind = o.get("type")
    if kind == "record":
        _compare_record(o, n, path, out)
    elif kind == "array":
        _compare(o["items"], n["items"], f"{path}[]", out)
    elif kind == "map":
        _compare(o["values"], n["values"], f"{path}{{}}", out)
    elif kind == "enum":
        missing = set(o["symbols"]) - set(n["symbols"])
        if missing:
            out.append(Problem(path, f"enum symbols removed: {sorted(missing)}"))
    elif o.get("logicalType") != n.get("logicalType"):
        out.append(Problem(path, f"logical type changed from {o.get('logicalType')} to {n.get('logicalType')}"))


def _compare_record(old: dict[str, Any], new: dict[str, Any], path: str, out: list[Problem]) -> None:
    old_fields = {f["name"]: f for f in old["fields"]}
    new_fields = {f["name"]: f for f in new["fields"]}
    for name, f in old_fields.items():
        if name not in new_fields:
            aliased = [n for n, nf in new_fields.items() if name in nf.get("aliases", [])]
            what = f"renamed to {aliased[0]}" if aliased else "removed"
            out.append(Problem(f"{path}.{name}", f"field {what}: fields are never renamed or removed"))
        else:
            _compare(f["type"], new_fields[name]["type"], f"{path}.{name}", out)
    for name, f in new_fields.items():
        if name not in old_fields and "default" not in f:
            out.append(Problem(f"{path}.{name}", "new field without a default"))


def _roundtrip(data: list[Any], writer: Any, reader: Any, direction: str) -> list[Problem]:
    for i, record in enumerate(data):
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, writer, record)
            buf.seek(0)
            schemaless_reader(buf, writer, reader)
        except Exception as exc:
            return [Problem(f"sample {i}", f"{direction}: {type(exc).__name__}: {exc}")]
    return []


def _restrict_to_old_branches(new: Any, old: Any) -> Any:
    """The new schema with every union cut back to the branches the old schema knows (for the forward check)."""
    if isinstance(new, list) and isinstance(old, list):
        old_names = {_type_name(b): b for b in old}
        return [_restrict_to_old_branches(b, old_names[_type_name(b)]) for b in new if _type_name(b) in old_names]
    if isinstance(new, dict) and isinstance(old, dict):
        if new.get("type") == "record" and old.get("type") == "record":
            old_fields = {f["name"]: f for f in old["fields"]}
            fields = []
            for f in new["fields"]:
                if f["name"] in old_fields:
                    f = {**f, "type": _restrict_to_old_branches(f["type"], old_fields[f["name"]]["type"])}
                fields.append(f)
            return {**new, "fields": fields}
        if new.get("type") == "array" == old.get("type"):
            return {**new, "items": _restrict_to_old_branches(new["items"], old["items"])}
        if new.get("type") == "map" == old.get("type"):
            return {**new, "values": _restrict_to_old_branches(new["values"], old["values"])}
    return new


def check_schemas(old: Schema, new: Schema, samples: int = 200) -> list[Problem]:
    """Every way ``new`` breaks the evolution rules against ``old``; empty when it is a legal evolution."""
    problems: list[Problem] = []
    _compare(old, new, _type_name(old).rsplit(".", 1)[-1], problems)
    if problems:
        return problems
    try:
        old_parsed, new_parsed = parse_schema(old), parse_schema(new)
        forward = parse_schema(_restrict_to_old_branches(new, old))
    except Exception as exc:
        return [Problem("schema", f"does not parse: {exc}")]
    problems += _roundtrip(list(generate_many(old, samples)), old_parsed, new_parsed, "new reader, old data")
    problems += _roundtrip(list(generate_many(forward, samples)), forward, old_parsed, "old reader, new data")
    return problems


def check_dirs(old_dir: Path, new_dir: Path, samples: int = 200) -> list[Problem]:
    return check_schemas(load_envelope(old_dir), load_envelope(new_dir), samples)
