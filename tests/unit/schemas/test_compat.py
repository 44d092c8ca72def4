"""The schema evolution checker: legal and illegal changes, through the API and `jobprov schemas check`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli
from jobprov.schemas import compat, registry

NS = registry.NAMESPACE
SAMPLES = 50  # generated records per direction: enough to exercise resolution, fast enough for unit tests


def _edit(directory: Path, record: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / f"{NS}.{record}.avsc"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    target = tmp_path / "v1"
    shutil.copytree(registry.schema_dir(), target)
    return target


@pytest.fixture
def make_v2(tmp_path: Path, v1: Path) -> Callable[..., Path]:
    def make(*changes: Callable[[Path], None]) -> Path:
        target = tmp_path / "v2"
        shutil.copytree(v1, target)
        for change in changes:
            change(target)
        return target

    return make


# --- legal changes ----------------------------------------------------------------------------------------


def add_metric_field_with_default(d: Path) -> None:
    _edit(
        d,
        "MetricMeasured",
        lambda s: s["fields"].append({"name": "quality", "type": ["null", "string"], "default": None}),
    )


def add_payload_type(d: Path) -> None:
    record = {
        "type": "record",
        "name": "JobPreempted",
        "namespace": NS,
        "doc": "The scheduler preempted the job.",
        "fields": [
            {"name": "reason", "type": "string"},
            {"name": "grace_s", "type": ["null", "long"], "default": None},
        ],
    }
    (d / f"{NS}.JobPreempted.avsc").write_text(json.dumps(record, indent=2))
    _edit(d, "Event", lambda s: _field(s, "payload")["type"].append(f"{NS}.JobPreempted"))


def test_identical_dirs_are_compatible(v1: Path, make_v2: Callable[..., Path]) -> None:
    assert compat.check_dirs(v1, make_v2(), SAMPLES) == []


def test_legal_evolution(v1: Path, make_v2: Callable[..., Path]) -> None:
    v2 = make_v2(add_metric_field_with_default, add_payload_type)
    envelope = registry.load_envelope(v2)
    branches = [b["name"] if isinstance(b, dict) else b for b in _field(envelope, "payload")["type"]]
    assert branches[-1] == f"{NS}.JobPreempted"  # the new branch really is in v2
    assert compat.check_dirs(v1, v2, SAMPLES) == []


def test_docs_may_change(v1: Path, make_v2: Callable[..., Path]) -> None:
    v2 = make_v2(lambda d: _edit(d, "Heartbeat", lambda s: s.update(doc="rewritten")))
    assert compat.check_dirs(v1, v2, SAMPLES) == []


# --- illegal changes --------------------------------------------------------------------------------------


def rename_field(d: Path) -> None:
    _edit(d, "MetricMeasured", lambda s: _field(s, "unit").update(name="units"))


def remove_field(d: Path) -> None:
    _edit(d, "ArtifactUsed", lambda s: s["fields"].remove(_field(s, "checksum")))


def add_field_without_default(d: Path) -> None:
    _edit(d, "MetricMeasured", lambda s: s["fields"].append({"name": "quality", "type": "string"}))


def change_string_to_long(d: Path) -> None:
    _edit(d, "Annotation", lambda s: _field(s, "key").update(type="long"))


def remove_union_branch(d: Path) -> None:
    _edit(d, "Event", lambda s: _field(s, "payload")["type"].remove(f"{NS}.Heartbeat"))


def remove_envelope_field(d: Path) -> None:
    _edit(d, "Event", lambda s: s["fields"].remove(_field(s, "attempt")))


ILLEGAL = [
    (rename_field, "unit"),
    (remove_field, "checksum"),
    (add_field_without_default, "quality"),
    (change_string_to_long, "key"),
    (remove_union_branch, "Heartbeat"),
    (remove_envelope_field, "attempt"),
]


@pytest.mark.parametrize(("change", "field"), ILLEGAL, ids=[c.__name__ for c, _ in ILLEGAL])
def test_illegal_evolution_names_the_field(
    v1: Path, make_v2: Callable[..., Path], change: Callable[[Path], None], field: str
) -> None:
    problems = compat.check_dirs(v1, make_v2(change), SAMPLES)
    assert problems, f"{change.__name__} must be reported"
    assert any(field in str(p) for p in problems), [str(p) for p in problems]


def test_rename_reports_the_old_name(v1: Path, make_v2: Callable[..., Path]) -> None:
    problems = compat.check_dirs(v1, make_v2(rename_field), SAMPLES)
    assert [p.path for p in problems] == ["Event.payload<MetricMeasured>.unit"]
    assert "removed" in problems[0].message


def test_rename_with_alias_is_still_illegal_and_says_so(v1: Path, make_v2: Callable[..., Path]) -> None:
    v2 = make_v2(
        lambda d: _edit(d, "MetricMeasured", lambda s: _field(s, "unit").update(name="units", aliases=["unit"]))
    )
    problems = compat.check_dirs(v1, v2, SAMPLES)
    assert any(p.path.endswith(".unit") and "renamed to units" in p.message for p in problems), problems


def test_type_change_names_both_types(v1: Path, make_v2: Callable[..., Path]) -> None:
    problems = compat.check_dirs(v1, make_v2(change_string_to_long), SAMPLES)
    assert [p.path for p in problems] == ["Event.payload<Annotation>.key"]
    assert "string" in problems[0].message
    assert "long" in problems[0].message


def test_legal_and_illegal_together_is_illegal(v1: Path, make_v2: Callable[..., Path]) -> None:
    v2 = make_v2(add_payload_type, remove_field)
    assert compat.check_dirs(v1, v2, SAMPLES)


# --- the CLI ----------------------------------------------------------------------------------------------


def test_cli_check_legal(v1: Path, make_v2: Callable[..., Path]) -> None:
    v2 = make_v2(add_metric_field_with_default, add_payload_type)
    result = CliRunner().invoke(cli, ["schemas", "check", str(v1), str(v2), "--samples", str(SAMPLES)])
    assert result.exit_code == 0, result.output
    assert "compatible" in result.output
    assert "incompatible" not in result.output


@pytest.mark.parametrize(("change", "field"), ILLEGAL, ids=[c.__name__ for c, _ in ILLEGAL])
def test_cli_check_illegal(v1: Path, make_v2: Callable[..., Path], change: Callable[[Path], None], field: str) -> None:
    result = CliRunner().invoke(cli, ["schemas", "check", str(v1), str(make_v2(change)), "--samples", str(SAMPLES)])
    assert result.exit_code == 1, result.output
    assert "incompatible" in result.output
    assert field in result.output


def test_cli_check_missing_envelope(tmp_path: Path, v1: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["schemas", "check", str(v1), str(empty)])
    assert result.exit_code == 1
    assert "Event.avsc" in result.output


# --- the released schemas ---------------------------------------------------------------------------------


def released_schemas() -> list[Path]:
    return sorted(registry.released_dir().glob("*.avsc"))


def test_there_is_a_released_schema() -> None:
    assert released_schemas(), f"no released schema in {registry.released_dir()}"


@pytest.mark.parametrize("released", released_schemas(), ids=lambda p: p.name)
def test_current_schema_is_compatible_with_released(released: Path) -> None:
    old = json.loads(released.read_text())
    assert compat.check_schemas(old, registry.load_envelope()) == []


@pytest.mark.parametrize("released", released_schemas(), ids=lambda p: p.name)
def test_released_schema_is_known_to_readers(released: Path) -> None:
    old = json.loads(released.read_text())
    assert registry.fingerprint_of(old) in registry.known_versions()
