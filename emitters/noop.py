"""The no-op transport: emission switched off (``JOBPROV_ENABLED=0`` or ``noop://``)."""

from __future__ import annotations

from jobprov.emitters.base import DeliveryReport, Framed


class NoopTransport:
    name = "noop"

    def send(self, batch: list[Framed]) -> None:
        return None

    def poll(self) -> None:
        return None

    def close(self, timeout: float) -> DeliveryReport:
        return DeliveryReport()
