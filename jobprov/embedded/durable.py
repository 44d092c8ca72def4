"""A local broker with a durable log: Tansu whose storage engine is a local SeaweedFS S3 store (objectstore.py).

What it acknowledged survives SIGKILL of the broker, the store or their owner: a restart on the same directory
finds the topics, the records and the consumer groups' committed offsets. Measured figures (start-up, memory,
throughput against the memory log) are in docs/performance.md; the choice is docs/decisions/0007.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jobprov.embedded.objectstore import BUCKET, ObjectStore
from jobprov.embedded.tansu import Broker


@dataclass
class DurableBroker:
    """Tansu on 127.0.0.1:``port``, its log kept under ``directory`` (0700)."""

    port: int
    directory: Path
    detached: bool = False
    """In their own session, as :class:`Broker`'s: the owner stops them last."""
    store: ObjectStore = field(init=False)
    broker: Broker = field(init=False)

    def __post_init__(self) -> None:
        self.store = ObjectStore(self.directory, self.directory / "store.log", detached=self.detached)
        self.broker = Broker(
            self.port, self.directory / "broker.log", detached=self.detached, storage=f"s3://{BUCKET}/"
        )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def url(self, topic: str) -> str:
        return self.broker.url(topic)

    def start(self, timeout: float = 30.0) -> DurableBroker:
        self.store.start(timeout)
        self.broker.environment = self.store.s3_environment()
        try:
            self.broker.start(timeout)
        except BaseException:
            self.store.stop()
            raise
        return self

    def stop(self, kill: bool = False, grace: float = 10.0) -> None:
        """The broker first (it writes to the store), then the store."""
        self.broker.stop(kill=kill, grace=grace)
        self.store.stop(kill=kill, grace=grace)
