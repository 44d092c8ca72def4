"""Who may ask the served query API what: tokens and scopes, the Host allow-list, CORS, and the bind rule.

Every request goes to a real server on 127.0.0.1 (never to another address); the app reads the real engine.
There is no write route yet, so the tests add one guarded the way write routes are (``require_scope("write")``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import Depends

from jobprov.cli.main import cli
from jobprov.embedded.service import ApiThread
from jobprov.embedded.tansu import free_port
from jobprov.query.api import create_app
from jobprov.query.security import require_scope
from jobprov.query.store import Store
from jobprov.query.tokens import token_hash
from jobprov.settings import ApiSettings
from tests.integration.test_queries import loaded  # noqa: F401 (the fixture)

READER, WRITER = "reader-2b7e151628aed2a6", "writer-abf7158809cf4f3c"


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            body = response.read()
            if response.headers.get_content_type() != "application/json":
                return response.status, dict(response.headers), body.decode()
            return response.status, dict(response.headers), json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, dict(exc.headers), json.loads(body)
        except ValueError:
            return exc.code, dict(exc.headers), body.decode()


@pytest.fixture
def serve(loaded: Store) -> Iterator[Callable[..., str]]:  # noqa: F811
    threads: list[ApiThread] = []

    def start(**settings: Any) -> str:
        app = create_app(loaded, settings=ApiSettings(**settings))

        @app.post("/api/v1/probe-write", dependencies=[Depends(require_scope("write"))])
        def probe_write() -> dict[str, str]:
            return {"written": "yes"}

        port = free_port()
        thread = ApiThread(app, port)
        thread.start()
        threads.append(thread)
        return f"http://127.0.0.1:{port}"

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens"
    path.write_text(f"{token_hash(READER)} read\n{token_hash(WRITER)} write\n")
    return str(path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_tokens_reads_are_open_and_writes_refused(serve: Callable[..., str]) -> None:
    url = serve()
    assert request(f"{url}/api/v1/status")[0] == 200
    status, headers, body = request(f"{url}/api/v1/probe-write", "POST")
    assert status == 401 and "none is configured" in body["detail"]
    assert headers["www-authenticate"] == "Bearer"
    assert request(f"{url}/api/v1/probe-write", "POST", bearer(WRITER))[0] == 401


def test_with_tokens_every_api_route_needs_one_with_the_right_scope(
    serve: Callable[..., str], tokens_file: str
) -> None:
    url = serve(tokens_file=tokens_file)
    for path in ("/api/v1/status", "/api/v1/metrics", "/api/v1/series/AM1", "/api/v1/jobs/n01-hsc-r"):
        assert request(f"{url}{path}")[0] == 401, path
        assert request(f"{url}{path}", headers=bearer("not-a-token"))[0] == 401, path
        assert request(f"{url}{path}", headers={"Authorization": f"Basic {READER}"})[0] == 401, path
        assert request(f"{url}{path}", headers=bearer(token_hash(READER)))[0] == 401, path  # the hash is no token
        assert request(f"{url}{path}", headers=bearer(READER))[0] == 200, path
        assert request(f"{url}{path}", headers=bearer(WRITER))[0] == 200, path
    status, _, body = request(f"{url}/api/v1/probe-write", "POST", bearer(READER))
    assert status == 403 and "scope is read" in body["detail"]
    assert request(f"{url}/api/v1/probe-write", "POST")[0] == 401
    status, _, body = request(f"{url}/api/v1/probe-write", "POST", bearer(WRITER))
    assert status == 200 and body == {"written": "yes"}
    # The probes and the page (no data) stay open.
    assert request(f"{url}/healthz")[0] == 200
    assert request(f"{url}/")[0] == 200


def test_the_cli_presents_its_token(serve: Callable[..., str], tokens_file: str) -> None:
    url = serve(tokens_file=tokens_file)
    runner = CliRunner()
    env = {"JOBPROV_HOME": "/nonexistent-jobprov-home"}
    refused = runner.invoke(cli, ["query", "--api", url, "status"], env=env)
    assert refused.exit_code != 0 and "token" in refused.output
    ok = runner.invoke(
        cli, ["query", "--api", url, "status", "--format", "json"], env={**env, "JOBPROV_API_TOKEN": READER}
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output) == {"succeeded": 48}
    assert READER not in ok.output + refused.output


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]", "", "0"])
def test_a_foreign_host_header_is_refused(serve: Callable[..., str], host: str) -> None:
    url = serve()
    status, _, body = request(f"{url}/api/v1/status", headers={"Host": host})
    assert status == 400 and "api.allowed_hosts" in body
    assert request(f"{url}/", headers={"Host": host})[0] == 400
    # Probes come with the pod's address as Host: they reveal nothing, so they answer.
    assert request(f"{url}/healthz", headers={"Host": host})[0] == 200


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:1", "[::1]:8000", "LOCALHOST."])
def test_loopback_host_headers_are_accepted(serve: Callable[..., str], host: str) -> None:
    assert request(f"{serve()}/api/v1/status", headers={"Host": host})[0] == 200


def test_configured_host_names_are_accepted(serve: Callable[..., str]) -> None:
    url = serve(allowed_hosts=("jobprov.example.org",))
    assert request(f"{url}/api/v1/status", headers={"Host": "jobprov.example.org"})[0] == 200
    assert request(f"{url}/api/v1/status", headers={"Host": "other.example.org"})[0] == 400


def test_cors_is_off_unless_an_origin_is_configured(serve: Callable[..., str]) -> None:
    origin = {"Origin": "https://dash.example.org"}
    _, headers, _ = request(f"{serve()}/api/v1/status", headers=origin)
    assert not any(h.lower().startswith("access-control-") for h in headers)

    url = serve(cors_origins=("https://dash.example.org",))
    _, headers, _ = request(f"{url}/api/v1/status", headers=origin)
    assert headers["access-control-allow-origin"] == "https://dash.example.org"
    _, headers, _ = request(f"{url}/api/v1/status", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in {h.lower() for h in headers}
    preflight = {**origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    status, headers, _ = request(f"{url}/api/v1/status", "OPTIONS", preflight)
    assert status == 200 and headers["access-control-allow-origin"] == "https://dash.example.org"
    status, _, _ = request(f"{url}/api/v1/status", "OPTIONS", {**preflight, "Origin": "https://evil.example"})
    assert status == 400


def test_serve_refuses_to_listen_beyond_loopback_without_tokens(tmp_path: Path) -> None:
    """The check runs before anything binds: the non-loopback address is never listened on."""
    runner = CliRunner()
    env = {"JOBPROV_HOME": str(tmp_path)}
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        result = runner.invoke(cli, ["serve", "--host", host, "--store", f"chdb://{tmp_path}/s"], env=env)
        assert result.exit_code == 2, result.output
        assert "api.tokens_file" in result.output and host in result.output
