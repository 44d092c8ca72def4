"""Transports and codecs chosen by URL: ``kafka://host:port/topic``, ``file:///dir``, ``noop://``."""

from __future__ import annotations

from urllib.parse import urlsplit

from jobprov.emitters.base import Transport
from jobprov.emitters.kafka import KafkaTransport, parse_kafka_url
from jobprov.emitters.noop import NoopTransport
from jobprov.emitters.spool import SpoolTransport
from jobprov.errors import ConfigError
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
    return KafkaTransport(
        bootstrap,
        topic,
        fallback=SpoolTransport(settings.spool_dir),
        delivery_timeout_ms=settings.delivery_timeout_ms,
        security=settings.kafka_config(),
    )


def make_codec(settings: EmitterSettings) -> Codec:
    if settings.schema_registry_url and settings.url.startswith("kafka:"):
        _, topic = parse_kafka_url(settings.url)
        return ConfluentCodec(settings.schema_registry_url, topic)
    return SingleObjectCodec()
