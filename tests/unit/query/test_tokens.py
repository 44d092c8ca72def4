"""API tokens held by their hash, the loopback rule, Host names, and the [api] settings' validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobprov.errors import ConfigError
from jobprov.query.security import host_name
from jobprov.query.tokens import Tokens, check_bind, is_loopback, token_hash
from jobprov.settings import load_api_settings

READER, WRITER = "r-token-7f3a", "w-token-91bc"


def test_a_token_is_known_by_its_hash_and_scope(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# reader\n{token_hash(READER)} read\n\n{token_hash(WRITER).upper()} write  # ci\n")
    tokens = Tokens.load(str(tokens_file))
    assert tokens.scope_of(READER) == "read"
    assert tokens.scope_of(WRITER) == "write"
    assert tokens.scope_of("") is None
    assert tokens.scope_of(READER + "x") is None
    assert tokens.scope_of(token_hash(READER)) is None  # the hash is not a token
    assert READER not in repr(tokens) and WRITER not in repr(tokens)
    assert Tokens.load(None, [f"{token_hash(READER)}:write"]).scope_of(READER) == "write"
    assert not Tokens.load(None)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{READER} read", "SHA-256 in hex"),  # the token itself pasted: refused, and not echoed
        (f"{token_hash(READER)} admin", "scope 'admin'"),
        (f"{token_hash(READER)}", "expected SHA256HEX SCOPE"),
        (f"{token_hash(READER)} read extra", "expected SHA256HEX SCOPE"),
    ],
)
def test_a_bad_tokens_file_names_the_line_and_never_the_token(tmp_path: Path, line: str, reason: str) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"{token_hash(WRITER)} write\n{line}\n")
    with pytest.raises(ConfigError, match=reason) as caught:
        Tokens.load(str(tokens_file))
    assert "line 2" in str(caught.value) and READER not in str(caught.value)


def test_an_unreadable_tokens_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api\.tokens_file"):
        Tokens.load(str(tmp_path / "missing"))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, Tokens())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7", "example.org", "localhost.example.org"])
def test_binding_beyond_loopback_without_tokens_is_refused(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match=r"api\.tokens_file"):
        check_bind(host, Tokens())
    check_bind(host, Tokens.load(None, [f"{token_hash(READER)}:read"]))


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:8000", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("Example.ORG.", "example.org"),
        ("evil.example:80", "evil.example"),
        ("", ""),
    ],
)
def test_host_names_lose_their_port(header: str, name: str) -> None:
    assert host_name(header) == name


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"JOBPROV_API_TOKENS": "abc:read"}, "api.tokens[0]"),
        ({"JOBPROV_API_CORS_ORIGINS": "*"}, "api.cors_origins"),
        ({"JOBPROV_API_CORS_ORIGINS": "https://ok.example/path"}, "api.cors_origins"),
        ({"JOBPROV_API_ALLOWED_HOSTS": "http://x"}, "api.allowed_hosts"),
        ({"JOBPROV_API_QUERY_TIMEOUT_S": "0"}, "api.query_timeout_s"),
        ({"JOBPROV_API_QUERY_TIMEOUT_S": "inf"}, "query_timeout_s"),
        ({"JOBPROV_API_MAX_CONCURRENT_QUERIES": "0"}, "api.max_concurrent_queries"),
        ({"JOBPROV_API_MAX_RESULT_ROWS": "-1"}, "api.max_result_rows"),
        ({"JOBPROV_API_TOKEN_FILE": "x"}, "JOBPROV_API_TOKEN_FILE"),
    ],
)
def test_api_settings_name_the_bad_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_api_settings(env=env)
    assert caught.value.key == key


def test_api_settings_from_the_environment() -> None:
    settings = load_api_settings(
        env={
            "JOBPROV_API_TOKENS": f"{token_hash(READER)}:read,{token_hash(WRITER)}:write",
            "JOBPROV_API_ALLOWED_HOSTS": "jobprov.example.org, 10.0.0.5",
            "JOBPROV_API_CORS_ORIGINS": "https://dash.example.org",
            "JOBPROV_API_QUERY_TIMEOUT_S": "5",
            "JOBPROV_API_URL": "http://127.0.0.1:8000",  # a client's variable, not a setting: let through
            "JOBPROV_API_TOKEN": WRITER,
        }
    )
    assert settings.allowed_hosts == ("jobprov.example.org", "10.0.0.5")
    assert settings.cors_origins == ("https://dash.example.org",)
    assert settings.query_timeout_s == 5.0
    assert Tokens.load(settings.tokens_file, settings.tokens).scope_of(WRITER) == "write"
