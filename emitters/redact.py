"""Keeping secrets out of events: environment allow-listing, and redaction of every string a job hands over.

The environment is captured only for allow-listed names, and even then a value is replaced when its name
looks secret. Every other string (command lines, provenance, parameters, tags, annotations, exception text,
step caveats...) is scanned for secret-bearing options (``--password x``, ``--token=x``), ``name=value`` and
``name: value`` pairs with secret-looking names, ``Authorization:`` headers, credentials in URLs, well-known
token formats, PEM blocks, and the literal values of any secret-named variable in the environment
(allow-listed or not). A map entry or an annotation whose key looks secret loses its whole value.

:class:`Redactor` applies all of it to an event payload; the emitter calls it once per event, just before
encoding, so no payload type and no caller can skip it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(pass(wd|word|phrase)?|secret|token(?!i[sz])|api[_-]?key|access[_-]?key|private[_-]?key|credential|"
    r"auth(?!or)|"
    r"session|cookie|signature|(^|[_-])key($|[_-])|(^|[_-])pw($|[_-])|dsn|conn(ection)?[_-]?str)",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_TOKEN_FORMATS = re.compile(
    r"(ghp_[A-Za-z0-9]{20,}|gho_[A-Za-z0-9]{20,}|ghs_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
    r"glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|"
    r"sk-[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|"
    r"AIza[0-9A-Za-z_-]{35}|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_-]{50,})"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")
# Inside free text (a `sh -c` script, an exception message): secret-named options and assignments.
_SECRET_WORD = r"[A-Za-z0-9_.-]*(?:pass(?:wd|word|phrase)?|secret|token|api[_-]?key|credential)[A-Za-z0-9_.-]*"  # noqa: S105
_INLINE_OPTION = re.compile(rf"(?P<opt>(?<![\w-])--?{_SECRET_WORD})(?P<sep>=|\s+)(?P<val>[^\s&;|'\"]+)", re.I)
_INLINE_ASSIGNMENT = re.compile(rf"(?P<name>(?<![\w-]){_SECRET_WORD})=(?P<val>[^\s&;|'\"]+)", re.I)
# `password: x`, `"token": "x"`, `secret => x` in logs, JSON, YAML or an exception message.
_INLINE_PAIR = re.compile(
    rf"(?P<name>(?<![\w-]){_SECRET_WORD}[\"']?)(?P<sep>\s*(?::|=>)\s*[\"']?)"
    r"(?!\[REDACTED\])(?P<val>[^\s,;&|'\"}]+)",
    re.I,
)
_AUTHORIZATION = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?P<val>(?:[a-z0-9-]+\s+)?[^\s\"',}]+)"
)
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|.*\Z)", re.S)
_ASSIGNMENT = re.compile(r"^(?P<name>-{0,2}[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>=)(?P<value>.+)$", re.S)


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    # Cached: every job asks it of every environment variable's name, twice (its environment and its argv).
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str, known_secrets: Iterable[str] = ()) -> str:
    """Remove credentials in URLs, known token formats, bearer tokens and known secret values."""
    for secret in known_secrets:
        if len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    if "-----BEGIN " in text:
        text = _PEM.sub(REDACTED, text)
    text = _AUTHORIZATION.sub(lambda m: f"{m['name']}{REDACTED}", text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _INLINE_OPTION.sub(lambda m: f"{m['opt']}{m['sep']}{REDACTED}", text)
    text = _INLINE_ASSIGNMENT.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _INLINE_PAIR.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    text = _TOKEN_FORMATS.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of every secret-named environment variable, longest first (so substrings go last)."""
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def redact_argv(argv: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    known = tuple(secret_values(environ or {}))
    return _redact_args(argv, lambda arg: _redacted(arg, known))


def _redact_args(argv: Iterable[str], text: Callable[[str], str]) -> list[str]:
    """A list of strings read as a command line: ``--password x`` hides the element after the option too."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        match = _ASSIGNMENT.match(arg)
        if match and is_secret_name(match["name"]):
            out.append(f"{match['name']}={REDACTED}")
            continue
        if arg.startswith("-") and "=" not in arg and " " not in arg and is_secret_name(arg.lstrip("-")):
            out.append(arg)
            hide_next = True
            continue
        out.append(text(arg))
    return out


def capture_environment(environ: Mapping[str, str], allowlist: Iterable[str]) -> dict[str, str]:
    """Allow-listed variables only (fnmatch patterns); secret-looking names keep their name, lose their value."""
    allowed = _allowlist_pattern(tuple(allowlist)).match
    items = dict(environ.items())  # one pass: os.environ decodes every name and value it hands out
    names = [name for name in items if allowed(name)]
    if not names:
        return {}
    known = tuple(secret_values(items))
    return {name: REDACTED if is_secret_name(name) else _redacted(items[name], known) for name in sorted(names)}


@lru_cache(maxsize=1024)
def _redacted(text: str, known_secrets: tuple[str, ...]) -> str:
    """:func:`redact_text`, cached for what every job of a process captures alike (its environment's values, its
    command line): the eight patterns over each were most of a job's start (82 of ~100 us, py-spy; 25 cached)."""
    return redact_text(text, known_secrets)


@lru_cache(maxsize=16)
def _allowlist_pattern(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """The allow-list as one compiled pattern (fnmatch's own translation): every job captures its environment,
    and matching each variable against each pattern in turn cost ~1 ms a job."""
    return re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")


# --- every string of a payload ------------------------------------------------------------------------------

_STR, _MAP, _LIST, _RECORD, _RECORD_LIST = range(1, 6)
_CACHE_MAX = 20_000  # distinct short strings remembered (metric names, tag values): ~ a few MB at most
_CACHE_LEN = 256  # longer strings (exception text) are rare and not worth remembering


def _kind(hint: Any) -> tuple[int, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else (0, None)
    if hint is str:
        return _STR, None
    if origin is dict:
        return _MAP, None
    if origin is list and args and args[0] is str:
        return _LIST, None
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return _RECORD_LIST, args[0]
    if dataclasses.is_dataclass(hint):
        return _RECORD, hint
    return 0, None


@cache
def _string_fields(cls: type[Any]) -> tuple[tuple[str, int, Any], ...]:
    """The fields of a model class that hold strings, directly or inside maps, lists and nested records."""
    hints = typing.get_type_hints(cls)
    plan = ((f.name, *_kind(hints[f.name])) for f in dataclasses.fields(cls))
    return tuple(item for item in plan if item[1])


class Redactor:
    """Redacts every string of an event payload (any model class of ``jobprov.schemas.models``).

    The secret values to look for are those of the secret-named variables of ``environ`` when the redactor is
    made. Short strings found harmless are remembered, so an event whose strings were all seen before (a
    metric's name and tags, after the first) costs a few set lookups. A payload with nothing to redact is
    returned as it is, not copied.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._known = secret_values(environ)
        self._clean: set[str] = set()  # strings that redact to themselves
        self._clean_keys: set[str] = set()  # ... and are no secret's name: a map's values under them stay

    def _remember(self, into: set[str], value: str) -> None:
        if len(value) <= _CACHE_LEN:
            if len(into) >= _CACHE_MAX:
                into.clear()
            into.add(value)

    def text(self, value: str) -> str:
        if value in self._clean:
            return value
        out = redact_text(value, self._known)
        if out == value:
            self._remember(self._clean, value)
        return out

    def mapping(self, values: Mapping[str, str]) -> dict[str, str]:
        """A secret-named key keeps its name and loses its value."""
        out: dict[str, str] = {}
        for key, value in values.items():
            if key in self._clean_keys:
                out[key] = self.text(value)
                continue
            name = self.text(key)
            secret = is_secret_name(key)
            out[name] = REDACTED if secret else self.text(value)
            if name == key and not secret:
                self._remember(self._clean_keys, key)
        return out

    def payload(self, obj: Any) -> Any:
        clean, clean_keys = self._clean, self._clean_keys
        changes: dict[str, Any] = {}
        for name, kind, _sub in _string_fields(obj.__class__):
            value = getattr(obj, name)
            if value is None:
                continue
            if kind == _STR:
                if value in clean and name != "value":
                    continue
                new: Any = self.text(value)
                if name == "value" and is_secret_name(getattr(obj, "key", None) or ""):
                    new = REDACTED  # an annotation (key, value) whose key looks secret
            elif kind == _MAP:
                if not value or (clean_keys.issuperset(value) and clean.issuperset(value.values())):
                    continue
                new = self.mapping(value)
            elif kind == _LIST:
                new = _redact_args(value, self.text) if value else value
            elif kind == _RECORD:
                new = self.payload(value)
            else:
                new = [self.payload(v) for v in value]
            if new != value:
                changes[name] = new
        return dataclasses.replace(obj, **changes) if changes else obj
