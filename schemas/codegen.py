"""Generates straight-line Python encoders and decoders from the event schemas, once, at load time.

A tree of small closures (one call per field, per value) costs more than the encoding itself on events of
ten-odd fields. Here each record type becomes one function whose body reads its fields in order, with the
common cases inlined: one-byte varints, cached string encodings, optional fields. The generated source is
built only from the schema (field names are checked to be identifiers); values reach the code only as
arguments. Only the types the event model uses are supported (null, boolean, int, long, double, string,
timestamp-millis, records, arrays, maps, unions of null and one type, unions of records); anything else is
refused when the code is built.
"""

from __future__ import annotations

import keyword
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobprov.errors import SerializationError

Out = list[bytes]
Encoder = Callable[[Any, Out], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_long(n: int) -> bytes:
    """Zigzag varint, as Avro encodes int and long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x4000:  # the common sizes without a loop: lengths, counts, sequence numbers
        return bytes((n,)) if n < 0x80 else bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL = [encode_long(i) for i in range(1024)]

# Job ids, metric names, units and tag keys repeat from event to event: their encodings are cached.
STRINGS: dict[str, bytes] = {}
_STRING_CACHE_LIMIT = 4096
_RECORD_MEMO_LIMIT = 1024  # decoded records kept per memoised record type (producers: a few per emitter)
_CACHEABLE_LENGTH = 64


def encode_string(value: str) -> bytes:
    data = value.encode()
    n = len(data)
    encoded = (SMALL[n] if n < 1024 else encode_long(n)) + data
    if n <= _CACHEABLE_LENGTH:
        if len(STRINGS) >= _STRING_CACHE_LIMIT:
            STRINGS.clear()
        STRINGS[value] = encoded
    return encoded


def timestamp_millis(value: datetime) -> int:
    # fastavro's arithmetic, so both encoders agree to the millisecond (truncation, not rounding).
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + int(delta.microseconds / 1000)


class Truncated(Exception):
    """The message ended inside a value."""


def full_name(schema: dict[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    return name if "." in name else f"{schema.get('namespace', namespace)}.{name}"


def _field_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise SerializationError(f"field name {name!r} is not usable as an attribute")
    return name


class _Source:
    """Shared bookkeeping: generated functions, the constants they use, unique local names."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {}
        self.functions: list[str] = []
        self.tail: list[str] = []  # statements that name generated functions: run after all are defined
        self._compiled = 0
        self.records: dict[str, str] = {}  # Avro full name -> generated function name
        self.schemas: dict[str, tuple[dict[str, Any], str]] = {}  # full name -> (schema, namespace)
        self._n = 0

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value: Any, prefix: str = "K") -> str:
        name = self.fresh(prefix)
        self.namespace[name] = value
        return name

    def resolve(self, schema: str, namespace: str) -> str:
        full = schema if "." in schema else f"{namespace}.{schema}"
        if full not in self.schemas:
            raise SerializationError(f"unsupported or unknown Avro type {schema!r}")
        return full

    def function_for(self, schema: Any, namespace: str) -> str:
        """The name of the generated function for ``schema``: a record's own, or a new standalone one."""
        schema = _unwrap(schema)
        kind = _kind(schema)
        if kind == "named":
            return self.records[self.resolve(schema, namespace)]
        if kind == "record":
            return self._record(schema, namespace)
        return self._standalone(schema, namespace)

    def _record(self, schema: dict[str, Any], namespace: str) -> str:
        raise NotImplementedError

    def _standalone(self, schema: Any, namespace: str) -> str:
        raise NotImplementedError

    def compiled(self, schema: Any, namespace: str) -> Any:
        """The generated function for ``schema``, compiled with everything generated before it."""
        name = self.function_for(schema, namespace)
        self.compile()
        return self.namespace[name]

    def compile(self) -> None:
        source = "\n\n".join([*self.functions[self._compiled :], *self.tail])
        self._compiled = len(self.functions)
        self.tail.clear()
        # The source comes from the schema alone (names checked to be identifiers), never from event data.
        exec(compile(source, "<jobprov.schemas.codegen>", "exec"), self.namespace)  # noqa: S102


def _kind(schema: Any) -> str:
    """The encoding a schema needs: a primitive name, 'record', 'array', 'map', 'union' or 'named'. A
    timestamp-millis is a long: the models hold epoch milliseconds."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema if schema in ("null", "boolean", "int", "long", "double", "string") else "named"
    kind = schema.get("type")
    if kind == "long" and schema.get("logicalType") == "timestamp-millis":
        return "long"
    if kind in ("record", "array", "map"):
        return str(kind)
    if isinstance(kind, str) and "logicalType" not in schema:
        return _kind(kind)
    raise SerializationError(f"unsupported Avro type {schema!r}")


def _unwrap(schema: Any) -> Any:
    """``{"type": "string"}`` -> ``"string"``; other schemas unchanged."""
    if (
        isinstance(schema, dict)
        and isinstance(schema.get("type"), str)
        and schema["type"] not in ("record", "array", "map")
        and "logicalType" not in schema
    ):
        return _unwrap(schema["type"])
    return schema


def _branch_names(branches: list[Any], namespace: str) -> list[str]:
    names = []
    for b in branches:
        b = _unwrap(b)
        if isinstance(b, str):
            names.append(b if b in ("null", "boolean", "int", "long", "double", "string") or "." in b
                         else f"{namespace}.{b}")  # fmt: skip
        elif b.get("type") == "record":
            names.append(full_name(b, namespace))
        else:
            names.append(str(b["type"]))
    return names


# --- encoders ---------------------------------------------------------------------------------------------


class EncoderBuilder(_Source):
    """``build(schema, namespace)`` returns ``encode(value, out)``, appending the value's bytes to ``out``."""

    def __init__(self) -> None:
        super().__init__()
        self.namespace.update(
            SMALL=SMALL, SG=STRINGS.get, ENC_STR=encode_string, ENC_LONG=encode_long,
            PACK_D=struct.Struct("<d").pack, ZERO=b"\x00", ONE=b"\x01",
        )  # fmt: skip

    def build(self, schema: Any, namespace: str) -> Encoder:
        encoder: Encoder = self.compiled(schema, namespace)
        return encoder

    def _standalone(self, schema: Any, namespace: str) -> str:
        fn = self.fresh("enc_")
        lines = [f"def {fn}(v, out):", "    A = out.append"]
        self._value(lines, "v", schema, namespace, 1)
        self.functions.append("\n".join(lines))
        return fn

    def _record(self, schema: dict[str, Any], namespace: str) -> str:
        full = full_name(schema, namespace)
        if full in self.records:
            return self.records[full]
        inner = full.rpartition(".")[0]
        fn = self.fresh("enc_" + full.rpartition(".")[2] + "_")
        self.records[full] = fn
        self.schemas[full] = (schema, inner)
        lines = [f"def {fn}(v, out):", "    A = out.append"]
        for f in schema["fields"]:
            var = self.fresh("x")
            lines.append(f"    {var} = v.{_field_name(f['name'])}")
            self._value(lines, var, f["type"], inner, 1)
        if len(lines) == 2:
            lines.append("    pass")
        self.functions.append("\n".join(lines))
        return fn

    def _value(self, lines: list[str], x: str, schema: Any, namespace: str, depth: int) -> None:
        pad = "    " * depth
        schema = _unwrap(schema)
        kind = _kind(schema)
        if kind == "null":
            return
        if kind == "string":
            lines.append(f"{pad}A(SG({x}) or ENC_STR({x}))")
        elif kind in ("long", "int"):
            lines.append(f"{pad}A(SMALL[{x}] if 0 <= {x} < 1024 else ENC_LONG({x}))")
        elif kind == "double":
            lines.append(f"{pad}A(PACK_D({x}))")
        elif kind == "boolean":
            lines.append(f"{pad}A(ONE if {x} else ZERO)")
        elif kind == "named":
            lines.append(f"{pad}{self.records[self.resolve(schema, namespace)]}({x}, out)")
        elif kind == "record":
            lines.append(f"{pad}{self._record(schema, namespace)}({x}, out)")
        elif kind == "array":
            e = self.fresh("e")
            lines += [f"{pad}if {x}:", f"{pad}    A(SMALL[len({x})] if len({x}) < 1024 else ENC_LONG(len({x})))",
                      f"{pad}    for {e} in {x}:"]  # fmt: skip
            self._value(lines, e, schema["items"], namespace, depth + 2)
            if lines[-1].endswith(":"):
                lines.append(f"{pad}        pass")
            lines.append(f"{pad}A(ZERO)")
        elif kind == "map":
            k, e = self.fresh("k"), self.fresh("e")
            lines += [f"{pad}if {x}:", f"{pad}    A(SMALL[len({x})] if len({x}) < 1024 else ENC_LONG(len({x})))",
                      f"{pad}    for {k}, {e} in {x}.items():", f"{pad}        A(SG({k}) or ENC_STR({k}))"]  # fmt: skip
            self._value(lines, e, schema["values"], namespace, depth + 2)
            lines.append(f"{pad}A(ZERO)")
        else:
            self._union(lines, x, schema, namespace, depth)

    def _union(self, lines: list[str], x: str, branches: list[Any], namespace: str, depth: int) -> None:
        pad = "    " * depth
        names = _branch_names(branches, namespace)
        if len(branches) == 2 and "null" in names:
            null_index = names.index("null")
            lines += [f"{pad}if {x} is None:", f"{pad}    A({self.const(SMALL[null_index], 'TAG')})", f"{pad}else:",
                      f"{pad}    A({self.const(SMALL[1 - null_index], 'TAG')})"]  # fmt: skip
            self._value(lines, x, branches[1 - null_index], namespace, depth + 1)
            return
        # A union of records: the branch is the model object's AVRO_NAME.
        entries = []
        for i, branch in enumerate(branches):
            branch = _unwrap(branch)
            if _kind(branch) not in ("record", "named"):
                raise SerializationError(f"unsupported union {branches!r}: only null|T or records")
            tag = self.const(SMALL[i], "TAG")
            entries.append(f"{names[i]!r}: ({tag}, {self.function_for(branch, namespace)})")
        table = self.fresh("UNION")
        self.tail.append(f"{table} = {{{', '.join(entries)}}}")
        t = self.fresh("t")
        lines += [
            f"{pad}{t} = {table}[{x}.AVRO_NAME]",
            f"{pad}A({t}[0])",
            f"{pad}{t}[1]({x}, out)",
        ]


# --- decoders ---------------------------------------------------------------------------------------------


class DecoderBuilder(_Source):
    """``build(schema, namespace)`` returns ``decode(buf, pos) -> (value, new_pos)``; records become
    instances of the model classes (``classes``: Avro full name -> class)."""

    def __init__(self, classes: dict[str, type[Any]]) -> None:
        super().__init__()
        self.classes = classes
        self.namespace.update(
            TRUNC=Truncated, NEW=object.__new__,
            UNPACK_D=struct.Struct("<d").unpack_from,
        )  # fmt: skip

    def build(self, schema: Any, namespace: str) -> Decoder:
        decoder: Decoder = self.compiled(schema, namespace)
        return decoder

    def _standalone(self, schema: Any, namespace: str) -> str:
        fn = self.fresh("dec_")
        lines = [f"def {fn}(buf, pos):", "    L = len(buf)"]
        self._value(lines, "y", schema, namespace, 1)
        lines.append("    return y, pos")
        self.functions.append("\n".join(lines))
        return fn

    def _record(self, schema: dict[str, Any], namespace: str) -> str:
        full = full_name(schema, namespace)
        if full in self.records:
            return self.records[full]
        cls = self.classes.get(full)
        if cls is None:
            raise SerializationError(f"no model class for record {full}")
        inner = full.rpartition(".")[0]
        fn = self.fresh("dec_" + full.rpartition(".")[2] + "_")
        self.records[full] = fn
        self.schemas[full] = (schema, inner)
        lines = [f"def {fn}(buf, pos):", "    L = len(buf)"]
        memo = self._memo_lookup(lines, schema, cls)
        lines.append(f"    obj = NEW({self.const(cls, 'CLS')})")
        for f in schema["fields"]:
            # Slot descriptors set fields directly: a frozen dataclass's __init__ would go through
            # object.__setattr__ once per field, which costs more than decoding the field.
            setter = self.const(getattr(cls, _field_name(f["name"])).__set__, "SET")
            var = self.fresh("y")
            self._value(lines, var, f["type"], inner, 1)
            lines.append(f"    {setter}(obj, {var})")
        if memo is not None:
            lines += [f"    if len({memo}) >= {_RECORD_MEMO_LIMIT}:", f"        {memo}.clear()",
                      f"    {memo}[key] = obj"]  # fmt: skip
        lines.append("    return obj, pos")
        self.functions.append("\n".join(lines))
        return fn

    def _memo_lookup(self, lines: list[str], schema: dict[str, Any], cls: type[Any]) -> str | None:
        """For a frozen record of plain strings (an event's producer: the same few per log), the code that
        returns the object already decoded from the same bytes; the name of its memo, or None.

        Measured on the replay benchmark: decoding a producer (three strings, an object) cost ~1 µs of an event's
        ~20; skipping over the strings and looking their bytes up costs a third of that."""
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen or any(_unwrap(f["type"]) != "string" for f in schema["fields"]):
            return None
        memo = self.const({}, "MEMO")
        lines.append("    start = pos")
        for _ in schema["fields"]:
            n = self.fresh("n")
            self._long(lines, n, "    ")
            lines += [f"    if {n} < 0 or pos + {n} > L:", "        raise TRUNC('string runs past the end')",
                      f"    pos += {n}"]  # fmt: skip
        lines += ["    key = buf[start:pos]", f"    obj = {memo}.get(key)", "    if obj is not None:",
                  "        return obj, pos", "    pos = start"]  # fmt: skip
        return memo

    def _long(self, lines: list[str], y: str, pad: str) -> None:
        # Inlined, multi-byte values too: every event has two times of six bytes, and a call cost more than its loop.
        b, n, shift = self.fresh("b"), self.fresh("n"), self.fresh("s")
        lines += [
            f"{pad}{b} = buf[pos]",
            f"{pad}pos += 1",
            f"{pad}if {b} < 128:",
            f"{pad}    {y} = ({b} >> 1) ^ -({b} & 1)",
            f"{pad}else:",
            f"{pad}    {n} = {b} & 0x7F",
            f"{pad}    {shift} = 7",
            f"{pad}    while {b} & 0x80:",
            f"{pad}        {b} = buf[pos]",
            f"{pad}        pos += 1",
            f"{pad}        {n} |= ({b} & 0x7F) << {shift}",
            f"{pad}        {shift} += 7",
            f"{pad}        if {shift} > 70:",
            f"{pad}            raise ValueError('varint longer than 10 bytes')",
            f"{pad}    {y} = ({n} >> 1) ^ -({n} & 1)",
        ]

    def _string(self, lines: list[str], y: str, pad: str) -> None:
        n, end = self.fresh("n"), self.fresh("end")
        self._long(lines, n, pad)
        lines += [f"{pad}{end} = pos + {n}", f"{pad}if {n} < 0 or {end} > L:",
                  f"{pad}    raise TRUNC('string runs past the end')", f"{pad}{y} = buf[pos:{end}].decode()",
                  f"{pad}pos = {end}"]  # fmt: skip

    def _value(self, lines: list[str], y: str, schema: Any, namespace: str, depth: int) -> None:
        pad = "    " * depth
        schema = _unwrap(schema)
        kind = _kind(schema)
        if kind == "null":
            lines.append(f"{pad}{y} = None")
        elif kind == "string":
            self._string(lines, y, pad)
        elif kind in ("long", "int"):
            self._long(lines, y, pad)
        elif kind == "double":
            lines += [f"{pad}{y} = UNPACK_D(buf, pos)[0]", f"{pad}pos += 8"]
        elif kind == "boolean":
            b = self.fresh("b")
            lines += [
                f"{pad}{b} = buf[pos]",
                f"{pad}if {b} > 1:",
                f"{pad}    raise ValueError(f'boolean byte {{{b}}}')",
                f"{pad}{y} = {b} == 1",
                f"{pad}pos += 1",
            ]
        elif kind in ("named", "record"):
            fn = self.records[self.resolve(schema, namespace)] if kind == "named" else self._record(schema, namespace)
            lines.append(f"{pad}{y}, pos = {fn}(buf, pos)")
        elif kind in ("array", "map"):
            self._blocks(lines, y, schema, namespace, depth, kind == "map")
        else:
            self._union(lines, y, schema, namespace, depth)

    def _blocks(self, lines: list[str], y: str, schema: Any, namespace: str, depth: int, pairs: bool) -> None:
        pad = "    " * depth
        c, skip, k, e = self.fresh("c"), self.fresh("s"), self.fresh("k"), self.fresh("e")
        lines += [f"{pad}{y} = {{}}" if pairs else f"{pad}{y} = []", f"{pad}while True:"]
        self._long(lines, c, pad + "    ")
        lines += [
            f"{pad}    if {c} == 0:",
            f"{pad}        break",
            f"{pad}    if {c} < 0:  # a block with its byte size first",
            f"{pad}        {c} = -{c}",
        ]
        self._long(lines, skip, pad + "        ")
        lines += [f"{pad}    if {c} > L:", f"{pad}        raise TRUNC('block count larger than the message')",
                  f"{pad}    for _ in range({c}):"]  # fmt: skip
        if pairs:
            self._string(lines, k, pad + "        ")
        self._value(lines, e, schema["values" if pairs else "items"], namespace, depth + 2)
        lines.append(f"{pad}        {y}[{k}] = {e}" if pairs else f"{pad}        {y}.append({e})")

    def _union(self, lines: list[str], y: str, branches: list[Any], namespace: str, depth: int) -> None:
        pad = "    " * depth
        names = _branch_names(branches, namespace)
        index = self.fresh("i")
        self._long(lines, index, pad)
        if len(branches) == 2 and "null" in names:
            null_index = names.index("null")
            lines += [
                f"{pad}if {index} == {null_index}:",
                f"{pad}    {y} = None",
                f"{pad}elif {index} == {1 - null_index}:",
            ]
            self._value(lines, y, branches[1 - null_index], namespace, depth + 1)
            lines += [f"{pad}else:", f"{pad}    raise ValueError(f'union branch {{{index}}} of 2')"]
            return
        fns = tuple(self.function_for(b, namespace) for b in branches)
        table = self.fresh("BRANCHES")
        self.tail.append(f"{table} = ({', '.join(fns)},)")
        lines += [f"{pad}if not 0 <= {index} < {len(fns)}:",
                  f"{pad}    raise ValueError(f'union branch {{{index}}} of {len(fns)}')",
                  f"{pad}{y}, pos = {table}[{index}](buf, pos)"]  # fmt: skip
