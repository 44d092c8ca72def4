"""No secret survives the emitter, whatever string of whatever payload carries it.

The table is every string the event model has (read from the .avsc files, the source of truth: a new field
is covered the day it is added) crossed with every kind of secret redaction knows. Each case builds a payload
with the secret in that one place, sends it through a real emitter into the spool, and checks the raw spool
bytes and the decoded event: the secret is gone and the event is there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobprov.emitters.redact import REDACTED, Redactor
from jobprov.schemas import registry
from jobprov.schemas.models import PAYLOAD_BY_AVRO_NAME, Annotation, MetricMeasured, from_avro, to_avro
from tests.unit.emitters.test_emitter import make_emitter, read_spool

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nVL4cS1B2OAWhMa2rPz\n-----END RSA PRIVATE KEY-----"

# kind of secret: (the text planted, what must not survive of it)
SECRETS = {
    "url credentials": ("https://bob:Sup3rS3cretPw@data.example.org/x", "Sup3rS3cretPw"),
    "github token": ("ghp_" + "Zq4mT8vK2pX9wL3nR7sD1fH6jB5cY0aE8gU2", "Zq4mT8vK2pX9wL3nR7sD1fH6jB5cY0aE8gU2"),
    "github fine-grained token": ("github_pat_" + "11ABCDEFG0aBcDeFgHiJkLmNoPqRsT", "11ABCDEFG0aBcDeFgHiJkLmNoPqRsT"),
    "gitlab token": ("glpat-" + "Zq4mT8vK2pX9wL3nR7sD", "Zq4mT8vK2pX9wL3nR7sD"),
    "slack token": ("xoxb-" + "123456789012-abcdefghijkl", "123456789012-abcdefghijkl"),
    "aws key id": ("AKIA" + "Q7X3M9K2PL5ZV8RT", "Q7X3M9K2PL5ZV8RT"),
    "api key": ("sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2", "A1b2C3d4E5f6G7h8I9j0K1l2"),
    "password=": ("retry with password=hunter2secret now", "hunter2secret"),
    "token: in text": ("token: abc123def456 expired", "abc123def456"),
    "secret in JSON": ('{"client_secret": "Zx9Yw8Vu7Ts6"}', "Zx9Yw8Vu7Ts6"),
    "authorization header": ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    "bearer header": ("authorization: Bearer abcdefghijkl.mnop", "abcdefghijkl"),
    "PEM block": (f"bad key:\n{PEM}\n", PEM_BODY),
    "PEM block cut short": (f"key {PEM[:80]}", PEM_BODY[:30]),
    "environment secret value": (f"signing failed for {AWS_SECRET}", AWS_SECRET),
}


def _minimal(schema: Any) -> Any:
    """The smallest valid value of an Avro type, in fastavro's dict form."""
    if isinstance(schema, list):
        return None if "null" in schema else _minimal(schema[0])
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "record":
        return {f["name"]: _minimal(f["type"]) for f in schema["fields"]}
    return {"string": "x", "int": 1, "long": 1, "double": 1.0, "boolean": True, "map": {}, "array": []}.get(kind, kind)


def _strings(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every place a string lives: (path, the record schema at the path's start) pairs, as paths of field
    names with ``[]`` for an array item, ``{key}`` / ``{value}`` for a map entry."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _strings(branch, path)
        return
    kind = schema["type"] if isinstance(schema, dict) else schema
    if kind == "string":
        yield path, None
    elif kind == "record":
        for f in schema["fields"]:
            yield from _strings(f["type"], (*path, f["name"]))
    elif kind == "array":
        yield from _strings(schema["items"], (*path, "[]"))
    elif kind == "map":
        yield (*path, "{key}"), None
        yield from _strings(schema["values"], (*path, "{value}"))


def _plant(record: dict[str, Any], schema: Any, path: tuple[str, ...], text: str) -> None:
    head, rest = path[0], path[1:]
    field = next(f for f in schema["fields"] if f["name"] == head)
    ftype = field["type"]
    if isinstance(ftype, list):
        ftype = next(t for t in ftype if t != "null")
    if not rest:
        record[head] = text
    elif rest[0] == "[]":
        items = ftype["items"]
        if isinstance(items, dict) and items.get("type") == "record":
            item = _minimal(items)
            _plant(item, items, rest[1:], text)
            record[head] = [item]
        else:
            record[head] = [text]
    elif rest[0] == "{key}":
        record[head] = {text: "x"}
    elif rest[0] == "{value}":
        record[head] = {"note": text}
    else:
        inner = _minimal(ftype)
        _plant(inner, ftype, rest, text)
        record[head] = inner


def _payload_cases() -> list[tuple[str, Any, tuple[str, ...]]]:
    payload_union = next(f for f in registry.load_envelope()["fields"] if f["name"] == "payload")["type"]
    return [(s["name"], s, path) for s in payload_union for path, _ in _strings(s)]


PAYLOAD_CASES = _payload_cases()


def test_the_table_covers_every_payload_and_nested_records() -> None:
    names = {name.rsplit(".", 1)[1] for name, _, _ in PAYLOAD_CASES}
    no_strings = {"ResourceSample", "Heartbeat"}  # numbers only
    assert names == {cls.__name__ for cls in PAYLOAD_BY_AVRO_NAME.values()} - no_strings
    paths = {(name.rsplit(".", 1)[1], ".".join(path)) for name, _, path in PAYLOAD_CASES}
    for expected in [
        ("ProvenanceDeclared", "values.{value}"),
        ("ProvenanceDeclared", "datasets.[].name"),
        ("ProvenanceDeclared", "git.remote"),
        ("StepFinished", "exception_message"),
        ("StepFinished", "caveats.[]"),
        ("JobStarted", "command_line.[]"),
        ("MetricMeasured", "tags.{value}"),
        ("Annotation", "value"),
    ]:
        assert expected in paths
    assert len(PAYLOAD_CASES) > 50


@pytest.fixture
def planted_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)


@pytest.mark.usefixtures("planted_env")
@pytest.mark.parametrize(
    ("avro_name", "schema", "path"), PAYLOAD_CASES, ids=lambda v: "" if isinstance(v, dict) else str(v)
)
def test_no_secret_survives_in_any_string(tmp_path: Path, avro_name: str, schema: Any, path: tuple[str, ...]) -> None:
    cls = PAYLOAD_BY_AVRO_NAME[avro_name]
    spool = tmp_path / "spool"
    emitter = make_emitter(spool)
    for kind, (text, _) in SECRETS.items():
        if (cls, path) == (MetricMeasured, ("name",)):
            text = text.replace("\n", " ")  # a metric name with a control character is refused, not redacted
        record = _minimal(schema)
        _plant(record, schema, path, text)
        emitter.emit(f"job-{kind}", from_avro(cls, record))
    report = emitter.close()
    assert report.errors == [] and report.spooled == len(SECRETS)

    raw = b"".join(p.read_bytes() for p in spool.iterdir())
    events = {e.job_id: e for e in read_spool(spool)}
    assert len(events) == len(SECRETS), "every event was recorded, redacted"
    for kind, (_, secret) in SECRETS.items():
        assert secret.encode() not in raw, f"{kind} at {'.'.join(path)} reached the spool"
        assert REDACTED in repr(to_avro(events[f"job-{kind}"].payload)), kind


@pytest.mark.parametrize("key", ["password", "GITHUB_TOKEN", "db_passwd", "client_secret", "api_key"])
def test_a_secret_named_key_loses_its_value_in_every_map(key: str) -> None:
    redactor = Redactor({})
    payload_union = next(f for f in registry.load_envelope()["fields"] if f["name"] == "payload")["type"]
    maps = [(s, path) for s in payload_union for path, _ in _strings(s) if path[-1] == "{value}"]
    assert len(maps) >= 4 and all(len(path) == 2 for _, path in maps), "maps are top-level fields"
    for schema, path in maps:
        record = _minimal(schema)
        record[path[0]] = {key: "plain-looking-value-42"}
        payload = redactor.payload(from_avro(PAYLOAD_BY_AVRO_NAME[schema["name"]], record))
        assert "plain-looking-value-42" not in repr(payload), (schema["name"], path)
        assert key in repr(payload), "the key itself stays readable"


def test_an_annotation_with_a_secret_named_key_loses_its_value() -> None:
    redactor = Redactor({})
    assert redactor.payload(Annotation(key="db_password", value="plain-looking")).value == REDACTED
    assert redactor.payload(Annotation(key="reviewer", value="plain-looking")).value == "plain-looking"


def test_harmless_payloads_are_not_copied_or_changed() -> None:
    from jobprov.schemas.models import ProvenanceDeclared

    redactor = Redactor({"AWS_SECRET_ACCESS_KEY": AWS_SECRET})
    metric = MetricMeasured(name="AM1", value=3.0, unit="mas", tags={"band": "r", "author": "alice"}, step="x")
    assert redactor.payload(metric) is metric
    prov = ProvenanceDeclared(values={"tokenizer": "bpe", "author": "alice", "dataset": "hsc", "keyfile": "k.pem"})
    assert redactor.payload(prov) is prov
