"""Integration fixtures: a real Kafka-protocol broker (Tansu by default, Docker Kafka on request). Every test under
this folder carries the ``integration`` marker, given here once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobprov.embedded.tansu import Broker, free_port, start_broker
from jobprov.settings import EmitterSettings, load_emitter_settings
from tests.conftest import selected_backend
from tests.integration.kafka_helpers import create_topic

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of tests/integration is an integration test (``-m "not integration"`` runs the unit tests)."""
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


class Endpoint:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def url(self, topic: str) -> str:
        return f"kafka://{self.bootstrap}/{topic}"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` (``jobprov.query.api.create_app``) served as `jobprov up` serves it, on a free loopback port, until
    the block ends: its base URL."""
    from jobprov.embedded.service import ApiThread

    port = free_port()
    thread = ApiThread(app, port)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    if selected_backend() == "docker":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield Endpoint(container.get_bootstrap_server())
        return
    broker = start_broker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        yield Endpoint(broker.bootstrap)
    finally:
        broker.stop()


@pytest.fixture
def topic(kafka: Endpoint) -> str:
    return create_topic(kafka.bootstrap, f"events-{uuid.uuid4().hex[:12]}", partitions=1)


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., EmitterSettings]:
    """Emitter settings isolated from the machine's environment, with a spool under tmp_path."""

    def make(url: str, **overrides: object) -> EmitterSettings:
        base = {
            "url": url,
            "spool_dir": str(tmp_path / "spool"),
            "capture_packages": False,
            "capture_git": False,
            "flush_timeout_s": 10.0,
            **overrides,
        }
        return load_emitter_settings(base, env={})

    return make


_CHDB_STORE: list[str] = []


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A migrated database of its own on the embedded ClickHouse engine. chdb opens one store per process,
    so every test shares the process's store and gets a fresh database in it."""
    from jobprov.sinks.clickhouse.client import connect
    from jobprov.sinks.clickhouse.ddl import Target
    from jobprov.sinks.clickhouse.migrate import migrate

    if not _CHDB_STORE:
        _CHDB_STORE.append(str(tmp_path_factory.mktemp("chdb")))
    client = connect(f"chdb://{_CHDB_STORE[0]}")
    database = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]
    client.command(f"DROP DATABASE IF EXISTS {database}")
    migrate(client, Target(database))
    client.jobprov_database = database
    yield client
    client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker this test may kill and restart on the same port (always native Tansu)."""
    broker = Broker(free_port(), tmp_path / "tansu.log")
    yield broker
    broker.stop(kill=True)
