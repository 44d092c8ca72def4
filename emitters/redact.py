"""Keeping secrets out of events: environment allow-listing and command-line redaction.

The environment is captured only for allow-listed names, and even then a value is replaced when its name
looks secret. Command lines are scanned for secret-bearing options (``--password x``, ``--token=x``),
``NAME=value`` assignments with secret-looking names, credentials in URLs, well-known token formats, and the
literal values of any secret-named variable in the environment (allow-listed or not).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(pass(wd|word|phrase)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth|"
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
_ASSIGNMENT = re.compile(r"^(?P<name>-{0,2}[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>=)(?P<value>.+)$", re.S)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str, known_secrets: Iterable[str] = ()) -> str:
    """Remove credentials in URLs, known token formats, bearer tokens and known secret values."""
    for secret in known_secrets:
        if len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _INLINE_OPTION.sub(lambda m: f"{m['opt']}{m['sep']}{REDACTED}", text)
    text = _INLINE_ASSIGNMENT.sub(lambda m: f"{m['name']}={REDACTED}", text)
    text = _TOKEN_FORMATS.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of every secret-named environment variable, longest first (so substrings go last)."""
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def redact_argv(argv: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    known = secret_values(environ or {})
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
        out.append(redact_text(arg, known))
    return out


def capture_environment(environ: Mapping[str, str], allowlist: Iterable[str]) -> dict[str, str]:
    """Allow-listed variables only (fnmatch patterns); secret-looking names keep their name, lose their value."""
    patterns = list(allowlist)
    known = secret_values(environ)
    captured: dict[str, str] = {}
    for name, value in environ.items():
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        captured[name] = REDACTED if is_secret_name(name) else redact_text(value, known)
    return dict(sorted(captured.items()))
