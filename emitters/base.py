"""The transport contract.

A transport takes framed events (bytes as they go on the wire, keyed by job id) and delivers them somewhere.
Guarantees every implementation keeps:

- ``send`` never raises and never blocks for long: what cannot be delivered now is handed to the fallback
  (the spool) or counted as lost, and the loss is reported by ``close``.
- ``close(timeout)`` returns within about ``timeout`` seconds and says what happened to everything sent.
- Transports are used from one thread at a time (the emitter's sender thread), except where noted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class Framed(NamedTuple):
    """One encoded event: the Kafka key (job id), the framed value, and its id for accounting."""

    key: str
    value: bytes
    event_id: str


@dataclass
class DeliveryReport:
    """Counts of events by fate, filled in by ``close``."""

    delivered: int = 0
    spooled: int = 0
    lost: int = 0
    rejected: int = 0  # invalid events the emitter refused to send (emitters/validate.py)
    spool_dir: str | None = None
    errors: list[str] = field(default_factory=list)

    def merge(self, other: DeliveryReport) -> None:
        self.delivered += other.delivered
        self.spooled += other.spooled
        self.lost += other.lost
        self.rejected += other.rejected
        self.spool_dir = self.spool_dir or other.spool_dir
        self.errors.extend(other.errors)


class Transport(Protocol):
    name: str

    def send(self, batch: list[Framed]) -> None:
        """Take ownership of a batch; never raises."""

    def poll(self) -> None:
        """Serve pending callbacks (delivery reports); cheap, never blocks."""

    def close(self, timeout: float) -> DeliveryReport:
        """Deliver or hand off everything still pending, within about ``timeout`` seconds."""
