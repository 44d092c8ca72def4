"""Bearer tokens of the query API, held by their SHA-256 only, and the check that keeps an API without tokens on
loopback. Standard library only (the settings validate token entries with it; the emitter installs light).

- Tokens are configured by their SHA-256 (``api.tokens_file``, ``api.tokens``), each with one scope: ``read``,
  or ``write`` (which includes read). A presented token is hashed and compared with every configured hash in
  constant time (:func:`hmac.compare_digest`); the token itself is never stored or logged.
- With no token configured the API may only listen on a loopback address (:func:`check_bind`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from jobprov.errors import ConfigError

SCOPES = ("read", "write")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a token, as the tokens file holds it (``printf %s TOKEN | sha256sum``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_token_entry(text: str, where: str) -> tuple[str, str]:
    """``SHA256HEX SCOPE`` as (hash, scope); a :class:`ConfigError` naming ``where`` otherwise (never the text:
    someone may have pasted a token itself)."""
    parts = text.split()
    if len(parts) != 2:
        raise ConfigError(where, "expected SHA256HEX SCOPE (the token's SHA-256 in hex, then read or write)")
    digest, scope = parts[0].lower(), parts[1]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(where, "the first field must be the token's SHA-256 in hex (64 characters), not the token")
    if scope not in SCOPES:
        raise ConfigError(where, f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    return digest, scope


@dataclass(frozen=True)
class Tokens:
    """The accepted tokens: (SHA-256 hex, scope) pairs."""

    entries: tuple[tuple[str, str], ...] = ()

    @classmethod
    def load(cls, tokens_file: str | None, tokens: Iterable[str] = ()) -> Tokens:
        entries: list[tuple[str, str]] = []
        if tokens_file:
            try:
                text = Path(tokens_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError("api.tokens_file", f"cannot read {tokens_file}: {exc}") from exc
            for number, raw in enumerate(text.splitlines(), 1):
                line = raw.split("#", 1)[0].strip()
                if line:
                    entries.append(parse_token_entry(line, f"api.tokens_file {tokens_file} line {number}"))
        for i, entry in enumerate(tokens):
            entries.append(parse_token_entry(entry.replace(":", " ", 1), f"api.tokens[{i}]"))
        return cls(tuple(entries))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def scope_of(self, token: str) -> str | None:
        """The widest scope of a presented token, or None. Every entry is compared (no early exit on a match)."""
        digest = token_hash(token)
        found: str | None = None
        for expected, scope in self.entries:
            if hmac.compare_digest(digest, expected) and (found is None or scope == "write"):
                found = scope
        return found


def grants(scope: str | None, wanted: str) -> bool:
    return scope == "write" or (scope == "read" and wanted == "read")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the API on this machine (a name other than localhost counts as not)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to serve beyond loopback without tokens (anyone who reaches the port could read everything)."""
    if not is_loopback(host) and not tokens:
        raise ConfigError(
            "api.tokens_file",
            f"the API would listen on {host}, beyond this machine, with no token configured: set "
            "JOBPROV_API_TOKENS_FILE (lines of SHA256HEX SCOPE) or bind to 127.0.0.1",
        )
