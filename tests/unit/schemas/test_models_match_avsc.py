"""The Python model (schemas/models.py) must mirror the .avsc files, which are the source of truth.

For every record of the expanded envelope there is exactly one dataclass with the same full name, the same
fields in the same order, matching types and the same defaults (and no default where Avro has none).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any

import pytest

from jobprov.schemas import registry
from jobprov.schemas.models import (
    PAYLOAD_TYPES,
    ConfigRef,
    Dataset,
    EpochMillis,
    Event,
    GitInfo,
    Payload,
    Producer,
)

MODEL_CLASSES: tuple[type[Any], ...] = (Event, Producer, *PAYLOAD_TYPES, Dataset, ConfigRef, GitInfo)
_PRIMITIVES = {str: ("string",), bool: ("boolean",), int: ("int", "long"), float: ("double",)}


def _full_name(record: dict[str, Any], namespace: str | None) -> str:
    name = record["name"]
    if "." in name or not namespace:
        return str(name)
    return f"{namespace}.{name}"


def collect_records(schema: Any, namespace: str | None = None, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named record of an (expanded) schema, by full name."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for branch in schema:
            collect_records(branch, namespace, out)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            full = _full_name(schema, schema.get("namespace", namespace))
            out[full] = schema
            inner_ns = full.rpartition(".")[0] or None
            for f in schema["fields"]:
                collect_records(f["type"], inner_ns, out)
        elif kind == "array":
            collect_records(schema["items"], namespace, out)
        elif kind == "map":
            collect_records(schema["values"], namespace, out)
    return out


def _resolve(avro: Any, named: dict[str, Any]) -> Any:
    if isinstance(avro, str) and avro in named:
        return named[avro]
    return avro


def _avro_kind(avro: Any) -> str:
    if isinstance(avro, list):
        return "union"
    if isinstance(avro, dict):
        return str(avro.get("type"))
    return str(avro)


def type_problems(hint: Any, avro: Any, path: str, named: dict[str, Any]) -> list[str]:
    """Differences between a Python annotation and an Avro type."""
    avro = _resolve(avro, named)
    kind = _avro_kind(avro)
    if hint is Payload:
        if not isinstance(avro, list):
            return [f"{path}: the payload union is Avro {kind}, not a union"]
        branches = [_full_name(_resolve(b, named), None) if isinstance(_resolve(b, named), dict) else b for b in avro]
        expected = [cls.AVRO_NAME for cls in PAYLOAD_TYPES]
        if branches != expected:
            return [f"{path}: payload union branches {branches} != model Payload {expected}"]
        return []
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(args) != 2 or len(inner) != 1:
            return [f"{path}: unsupported union annotation {hint}"]
        if not (isinstance(avro, list) and len(avro) == 2 and avro[0] == "null"):
            return [f"{path}: {hint} must be Avro ['null', X], got {avro!r}"]
        return type_problems(inner[0], avro[1], path, named)
    if isinstance(avro, list):
        return [f"{path}: Avro union {avro!r} but the model says {hint}"]
    if hint == EpochMillis:
        if not (
            isinstance(avro, dict) and avro.get("type") == "long" and avro.get("logicalType") == "timestamp-millis"
        ):
            return [f"{path}: EpochMillis must be long/timestamp-millis, got {avro!r}"]
        return []
    if isinstance(avro, dict) and avro.get("logicalType"):
        return [f"{path}: Avro logical type {avro['logicalType']} but the model says {hint}"]
    if hint in _PRIMITIVES:
        if kind not in _PRIMITIVES[hint]:
            return [f"{path}: {hint.__name__} must be Avro {'/'.join(_PRIMITIVES[hint])}, got {kind}"]
        return []
    if origin is dict:
        if args[0] is not str or kind != "map":
            return [f"{path}: {hint} must be an Avro map, got {kind}"]
        return type_problems(args[1], avro["values"], f"{path}{{}}", named)
    if origin is list:
        if kind != "array":
            return [f"{path}: {hint} must be an Avro array, got {kind}"]
        return type_problems(args[0], avro["items"], f"{path}[]", named)
    if dataclasses.is_dataclass(hint):
        if kind != "record":
            return [f"{path}: {hint.__name__} must be an Avro record, got {kind}"]
        if _full_name(avro, None) != hint.AVRO_NAME:
            return [f"{path}: record {avro['name']} but the model says {hint.AVRO_NAME}"]
        return []
    return [f"{path}: unsupported annotation {hint}"]


def _python_default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    if f.default is not dataclasses.MISSING:
        return True, f.default
    if f.default_factory is not dataclasses.MISSING:
        return True, f.default_factory()
    return False, None


def model_problems(cls: type[Any], record: dict[str, Any], named: dict[str, Any]) -> list[str]:
    """Every difference between a model dataclass and its Avro record."""
    problems: list[str] = []
    full = _full_name(record, record.get("namespace"))
    if full != cls.AVRO_NAME:
        problems.append(f"{cls.__name__}.AVRO_NAME is {cls.AVRO_NAME!r}, the record is {full!r}")
    fields = dataclasses.fields(cls)
    py_names = [f.name for f in fields]
    avro_names = [f["name"] for f in record["fields"]]
    if py_names != avro_names:
        problems.append(f"{cls.__name__}: fields {py_names} != Avro fields {avro_names} (names and order)")
        return problems
    hints = typing.get_type_hints(cls, include_extras=True)
    for f, af in zip(fields, record["fields"], strict=True):
        path = f"{cls.__name__}.{f.name}"
        problems += type_problems(hints[f.name], af["type"], path, named)
        has_default, default = _python_default(f)
        if "default" in af:
            if not has_default:
                problems.append(f"{path}: Avro default {af['default']!r} but no default in the model")
            elif default != af["default"] or type(default) is not type(af["default"]):
                problems.append(f"{path}: model default {default!r} != Avro default {af['default']!r}")
        elif has_default:
            problems.append(f"{path}: required in Avro (no default) but the model defaults it to {default!r}")
    return problems


def schema_problems(envelope: dict[str, Any]) -> list[str]:
    """Every difference between the model classes and an expanded envelope schema."""
    named = collect_records(envelope)
    by_name = {cls.AVRO_NAME: cls for cls in MODEL_CLASSES}
    problems = [f"record {n} has no model class" for n in sorted(named.keys() - by_name.keys())]
    problems += [f"model class {by_name[n].__name__} has no record" for n in sorted(by_name.keys() - named.keys())]
    for name in sorted(named.keys() & by_name.keys()):
        problems += model_problems(by_name[name], named[name], named)
    return problems


@pytest.fixture(scope="module")
def envelope() -> dict[str, Any]:
    return registry.load_envelope()


def test_every_record_has_a_model_class_and_back(envelope: dict[str, Any]) -> None:
    records = set(collect_records(envelope))
    classes = {cls.AVRO_NAME for cls in MODEL_CLASSES}
    assert records == classes
    assert len(records) == len(list(registry.schema_dir().glob("*.avsc")))  # one record per .avsc file
    assert len({p.name for p in registry.schema_dir().glob("*.avsc")}) == len(records)


@pytest.mark.parametrize("cls", MODEL_CLASSES, ids=lambda c: c.__name__)
def test_model_matches_avsc(cls: type[Any], envelope: dict[str, Any]) -> None:
    named = collect_records(envelope)
    assert cls.AVRO_NAME in named, f"no record {cls.AVRO_NAME} in the envelope"
    problems = model_problems(cls, named[cls.AVRO_NAME], named)
    assert problems == []


def test_payload_union_order_matches_model(envelope: dict[str, Any]) -> None:
    payload = next(f for f in envelope["fields"] if f["name"] == "payload")
    names = [b["name"] if isinstance(b, dict) else b for b in payload["type"]]
    assert names == [cls.AVRO_NAME for cls in PAYLOAD_TYPES]


# --- the comparison itself detects drift -------------------------------------------------------------


def _record(envelope: dict[str, Any], name: str) -> dict[str, Any]:
    return collect_records(envelope)[f"{registry.NAMESPACE}.{name}"]


def _field(envelope: dict[str, Any], record: str, field: str) -> dict[str, Any]:
    return next(f for f in _record(envelope, record)["fields"] if f["name"] == field)


def _rename(env: dict[str, Any]) -> None:
    _field(env, "MetricMeasured", "unit")["name"] = "units"


def _reorder(env: dict[str, Any]) -> None:
    fields = _record(env, "Dataset")["fields"]
    fields[1], fields[2] = fields[2], fields[1]


def _add_field(env: dict[str, Any]) -> None:
    _record(env, "Heartbeat")["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})


def _string_to_long(env: dict[str, Any]) -> None:
    _field(env, "ArtifactUsed", "uri")["type"] = "long"


def _optional_to_required(env: dict[str, Any]) -> None:
    f = _field(env, "JobFinished", "exit_code")
    f["type"] = "int"
    del f["default"]


def _change_default(env: dict[str, Any]) -> None:
    _field(env, "Annotation", "target_type")["default"] = "artifact"


def _drop_timestamp_logical_type(env: dict[str, Any]) -> None:
    next(f for f in env["fields"] if f["name"] == "event_time")["type"] = "long"


def _map_values_to_long(env: dict[str, Any]) -> None:
    _field(env, "MetricMeasured", "tags")["type"] = {"type": "map", "values": "long"}


def _swap_union_branches(env: dict[str, Any]) -> None:
    branches = next(f for f in env["fields"] if f["name"] == "payload")["type"]
    branches[0], branches[1] = branches[1], branches[0]


def _rename_record(env: dict[str, Any]) -> None:
    _record(env, "GitInfo")["name"] = f"{registry.NAMESPACE}.Git"


def _boolean_to_string(env: dict[str, Any]) -> None:
    _field(env, "GitInfo", "dirty")["type"] = ["null", "string"]


@pytest.mark.parametrize(
    ("mutate", "mentions"),
    [
        (_rename, "units"),
        (_reorder, "Dataset"),
        (_add_field, "extra"),
        (_string_to_long, "ArtifactUsed.uri"),
        (_optional_to_required, "JobFinished.exit_code"),
        (_change_default, "Annotation.target_type"),
        (_drop_timestamp_logical_type, "Event.event_time"),
        (_map_values_to_long, "MetricMeasured.tags"),
        (_swap_union_branches, "Event.payload"),
        (_rename_record, "GitInfo"),
        (_boolean_to_string, "GitInfo.dirty"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_comparison_detects_drift(envelope: dict[str, Any], mutate: Any, mentions: str) -> None:
    modified = copy.deepcopy(envelope)
    mutate(modified)
    problems = schema_problems(modified)
    assert problems, "a drifted schema must be reported"
    assert any(mentions in p for p in problems), problems


def test_comparison_detects_drifted_python_default() -> None:
    """A model whose default differs from the Avro default is reported, too."""

    @dataclasses.dataclass(frozen=True)
    class Drifted:
        AVRO_NAME: typing.ClassVar[str] = f"{registry.NAMESPACE}.StepStarted"
        name: str
        step_attempt: int = 2
        parent_step: str | None = None

    named = collect_records(registry.load_envelope())
    problems = model_problems(Drifted, named[Drifted.AVRO_NAME], named)
    assert any("step_attempt" in p and "default" in p for p in problems), problems
