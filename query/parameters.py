"""How a question's parameters are declared, converted and checked (the questions are in
:mod:`jobprov.query.params`).

A question is a frozen dataclass deriving from :class:`Question`; each field is declared with a helper below
(:func:`argument`, :func:`text`, :func:`number`, :func:`flag`, :func:`time`, :func:`pairs`, :func:`many`,
:func:`choice`) that records its :class:`Param`: kind, help, bounds, choices, and its names on the command line
and over HTTP. :meth:`Question.__post_init__` checks the values whoever makes the question (a bad one raises
:class:`ParameterError` naming the field and the reason); :meth:`Question.from_raw` turns raw values (text from a
command line or a URL) into typed ones with the same errors; :meth:`Question.http_request` is the path and query
string that ask it over HTTP.
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from jobprov.errors import QueryError
from jobprov.query.limits import Bounds

Q = TypeVar("Q", bound="Question")
KINDS = ("text", "int", "float", "flag", "time", "pairs", "many", "choice")
ARGUMENT = "ARG"  # Param.cli for a positional argument


class ParameterError(QueryError):
    """A parameter's value is out of its type, bounds or choices. ``name`` is the field, ``reason`` the rule."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Param:
    """How one field of a question is typed, bounded and named outside Python."""

    kind: str
    help: str
    http: str | None = None  # the HTTP query name (default: the field's); a path segment when the route names it
    cli: str | None = None  # the CLI option (default: --field-name), or ARGUMENT
    bounds: Bounds | None = None
    choices: tuple[str, ...] = ()
    switch: Any = None  # the value a CLI flag (cli) sets, for a field that is not a plain on/off flag
    switch_help: str = ""  # what that flag does, in the CLI's words
    metavar: str | None = None
    required: bool = False


def _field(kind: str, help: str, default: Any = dataclasses.MISSING, **spec: Any) -> Any:
    meta = {"param": Param(kind, help, **spec)}
    if kind == "pairs":
        return dataclasses.field(default_factory=dict, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def argument(help: str, kind: str = "text", **spec: Any) -> Any:
    """A required parameter: a positional argument on the command line (unless ``cli`` says otherwise)."""
    return dataclasses.field(metadata={"param": Param(kind, help, **{"cli": ARGUMENT, "required": True, **spec})})


def text(help: str, **spec: Any) -> Any:
    return _field("text", help, None, **spec)


def number(default: float, bounds: Bounds, help: str, **spec: Any) -> Any:
    return _field("int" if isinstance(default, int) else "float", help, default, bounds=bounds, **spec)


def flag(help: str, default: bool = False, **spec: Any) -> Any:
    return _field("flag", help, default, **spec)


def time(help: str, **spec: Any) -> Any:
    return _field("time", help, None, **spec)


def pairs(help: str, **spec: Any) -> Any:
    return _field("pairs", help, **{"metavar": "KEY=VALUE", **spec})


def many(help: str, **spec: Any) -> Any:
    return _field("many", help, (), **spec)


def choice(choices: Sequence[str], help: str, default: str | None = None, **spec: Any) -> Any:
    return _field("choice", help, default, choices=tuple(choices), **spec)


@dataclass(frozen=True)
class Spec:
    """A field of a question with its :class:`Param` and default (``dataclasses.MISSING``: required)."""

    name: str
    param: Param
    default: Any

    @property
    def http_name(self) -> str:
        return self.param.http or self.name

    @property
    def cli_name(self) -> str:
        return self.param.cli or "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Question:
    """A question to the store. ``ROUTE``: its path under ``/api/v1`` (``{name}`` or ``{name:path}`` segments are
    fields); ``SUMMARY``: one line for the API's documentation."""

    ROUTE: ClassVar[str]
    SUMMARY: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in self.specs():
            _check(spec, getattr(self, spec.name))

    @classmethod
    def specs(cls) -> list[Spec]:
        return [
            Spec(f.name, f.metadata["param"], f.default_factory() if f.default_factory is not dataclasses.MISSING
                 else f.default)
            for f in dataclasses.fields(cls)
        ]  # fmt: skip

    @classmethod
    def path_fields(cls) -> list[str]:
        return re.findall(r"\{(\w+)(?::path)?\}", cls.ROUTE)

    @classmethod
    def from_raw(cls: type[Q], values: Mapping[str, Any]) -> Q:
        """The question from raw values by field name (lists or tuples of text, text, numbers, or typed values;
        None or missing: the default)."""
        given = {}
        for spec in cls.specs():
            value = values.get(spec.name)
            if value is not None:
                given[spec.name] = _convert(spec, value)
        missing = [s.name for s in cls.specs() if s.default is dataclasses.MISSING and s.name not in given]
        if missing:
            raise ParameterError(missing[0], "required")
        return cls(**given)

    def arguments(self) -> dict[str, Any]:
        """The fields by name, as the query functions take them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def http_request(self) -> tuple[str, list[tuple[str, str]]]:
        """The path (segments percent-encoded, "/" too) and the query parameters that ask this over HTTP."""
        in_path = self.path_fields()
        path = re.sub(
            r"\{(\w+)(?::path)?\}", lambda m: urllib.parse.quote(str(getattr(self, m[1])), safe=""), self.ROUTE
        )
        query: list[tuple[str, str]] = []
        for spec in self.specs():
            value = getattr(self, spec.name)
            if spec.name in in_path or value is None:
                continue
            if spec.param.kind == "pairs":
                query += [(spec.http_name, f"{k}={v}") for k, v in value.items()]
            elif spec.param.kind == "many":
                query += [(spec.http_name, str(v)) for v in value]
            elif spec.param.kind == "flag":
                query.append((spec.http_name, "true" if value else "false"))
            elif spec.param.kind == "time":
                query.append((spec.http_name, value.isoformat()))
            else:
                query.append((spec.http_name, str(value)))
        return path, query


def _convert(spec: Spec, value: Any) -> Any:
    kind = spec.param.kind
    if kind == "pairs":
        return value if isinstance(value, Mapping) else parse_pairs(spec.name, value)
    if kind == "many":
        return (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    if kind == "time":
        return parse_time(spec.name, value)
    if kind in ("int", "float") and isinstance(value, str):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise ParameterError(spec.name, f"expected a number, got {value!r}") from None
    if kind == "flag" and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ParameterError(spec.name, f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return value


def _check(spec: Spec, value: Any) -> None:
    param = spec.param
    if value is None:
        if param.required:
            raise ParameterError(spec.name, "required")
        return
    if param.kind in ("int", "float"):
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not (whole or (param.kind == "float" and isinstance(value, float))):
            wanted = "a whole number" if param.kind == "int" else "a number"
            raise ParameterError(spec.name, f"expected {wanted}, got {value!r}")
        if param.bounds is not None and not (math.isfinite(value) and param.bounds.holds(value)):
            raise ParameterError(spec.name, f"must be {param.bounds.words()}, got {value!r}")
    elif param.kind == "choice" and value not in param.choices:
        raise ParameterError(spec.name, f"one of {', '.join(param.choices)}, not {value!r}")
    elif param.kind == "many" and param.required and not value:
        raise ParameterError(spec.name, "at least one value is required")
    elif param.kind == "text" and param.required and not isinstance(value, str):
        raise ParameterError(spec.name, f"expected text, got {value!r}")


def parse_pairs(name: str, items: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` items as a mapping (a later key wins); ParameterError naming ``name`` for any other text."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ParameterError(name, f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def parse_time(name: str, raw: str | datetime) -> datetime:
    """An ISO 8601 time (a ``Z`` suffix allowed; no zone means UTC) or a datetime, as the same instant in UTC."""
    if isinstance(raw, datetime):
        value = raw
    else:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ParameterError(name, f"{raw!r} is not an ISO 8601 time") from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
