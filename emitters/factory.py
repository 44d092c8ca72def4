"""Transports and codecs chosen by URL: ``kafka://host:port/topic``, ``file:///dir``, ``noop://``."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from jobprov.emitters.base import Transport
from jobprov.emitters.kafka import KafkaTransport, parse_kafka_url
from jobprov.emitters.noop import NoopTransport
from jobprov.emitters.spool import SpoolTransport
from jobprov.errors import ConfigError, TransportError
from jobprov.schemas.wire import Codec, ConfluentCodec, SingleObjectCodec
from jobprov.settings import EmitterSettings


def spool_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
        raise ConfigError("url", f"{url!r}: expected file:///absolute/dir")
    return parts.path


def make_transport(settings: EmitterSettings) -> Transport:
    """The default chain: Kafka with the spool as fallback; or the spool alone; or nothing."""
    if not settings.enabled or settings.url.startswith("noop:"):
        return NoopTransport()
    if settings.url.startswith("file:"):
        return SpoolTransport(spool_path(settings.url))
    bootstrap, topic = parse_kafka_url(settings.url)
    try:
        fallback: Transport | None = SpoolTransport(settings.spool_dir)
    except TransportError as exc:
        # The broker is still the one configured; only the safety net is missing, and the job is told so.
        fallback = None
        _say(f"{exc}; events go to {settings.url} with no spool: any the broker does not acknowledge are lost")
    return KafkaTransport(
        bootstrap,
        topic,
        fallback=fallback,
        delivery_timeout_ms=settings.delivery_timeout_ms,
        linger_ms=settings.linger_ms,
        security=settings.kafka_config(),
    )


def make_codec(settings: EmitterSettings) -> Codec:
    if settings.schema_registry_url and settings.url.startswith("kafka:"):
        _, topic = parse_kafka_url(settings.url)
        return ConfluentCodec(settings.schema_registry_url, topic)
    return SingleObjectCodec()


def _say(message: str) -> None:
    try:
        print(f"jobprov: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a closed stderr is no reason to fail the job
        return
