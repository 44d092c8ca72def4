"""The exception hierarchy: one root, a few meaningful children.

Third-party errors are wrapped with ``raise ... from exc`` so callers catch ``JobprovError`` only.
"""

from __future__ import annotations


class JobprovError(Exception):
    """Root of every error jobprov raises on purpose."""


class ConfigError(JobprovError):
    """A configuration value is unknown or invalid. The message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class SerializationError(JobprovError):
    """An event could not be encoded or decoded."""


class InvalidEventError(SerializationError, ValueError):
    """An event carries a value the pipeline could not store or fold (the message names the rule)."""


class UnknownSchemaError(SerializationError):
    """The writer schema of an encoded event is not known to this reader (a dead letter, not a crash)."""


class SchemaCompatibilityError(JobprovError):
    """A schema change breaks the evolution rules."""


class TransportError(JobprovError):
    """A transport could not be created or used."""


class SinkError(JobprovError):
    """A sink could not write."""


class QueryError(JobprovError):
    """A query has bad parameters."""


class UnknownNameError(QueryError):
    """A metric, attribute key or job the store does not know. The message names it and its close matches
    (the HTTP API answers 404)."""


class QueryTimeout(JobprovError):
    """A query ran past its time budget or was cancelled (its client left); the HTTP API answers 503."""
