"""Typed settings from defaults, a TOML file, ``JOBPROV_*`` environment variables and arguments.

Precedence, lowest first: defaults, the TOML file (``JOBPROV_CONFIG`` or an explicit path, table ``[emitter]``),
the environment, explicit arguments. Unknown keys are rejected with their names, so a typo never silently
falls back to a default. Secrets are held as :class:`Secret` and never printed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobprov.errors import ConfigError

ENV_PREFIX = "JOBPROV_"

# Variables that carry a job's identity from `jobprov run` to the programs it wraps. They are not settings,
# but they are ours, so the unknown-key check must let them through.
RUNTIME_ENV = frozenset(
    {
        "JOBPROV_CONFIG",
        "JOBPROV_JOB_ID",
        "JOBPROV_ATTEMPT",
        "JOBPROV_PARENT_STEP",
        "JOBPROV_TEST_BACKEND",
        "JOBPROV_HOME",
        "JOBPROV_API_URL",
        "JOBPROV_API_TOKEN",  # the token the CLI presents to the API (a client's secret, not a server setting)
    }
)


class Secret:
    """A value that must never be printed or logged."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def state_home() -> Path:
    """Where this user's local jobprov keeps its state: the spool, and `jobprov up`'s store and broker log.
    ``$JOBPROV_HOME``, else ``$XDG_STATE_HOME/jobprov``, else ``~/.local/state/jobprov``."""
    explicit = os.environ.get("JOBPROV_HOME")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "jobprov"


def _default_spool_dir() -> str:
    return str(state_home() / "spool")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


DEFAULT_ENV_ALLOWLIST = (
    "USER",
    "LOGNAME",
    "HOSTNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "PATH",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "CONDA_PREFIX",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "SLURM_*",
    "PBS_*",
    "LSB_*",
    "_CONDOR_*",
    "CI",
    "CI_*",
    "GITHUB_*",
    "GITLAB_*",
    "BUILD_*",
    "JOB_NAME",
    "BUILDKITE_*",
    "JENKINS_URL",
    "EUPS_*",
)


@dataclass(frozen=True)
class KafkaSecuritySettings:
    """The ``kafka_*`` settings every Kafka client of jobprov takes: emitters (``JOBPROV_KAFKA_*``) and the
    processor (``JOBPROV_PROCESSOR_KAFKA_*``: faust's consumer and producer, topic creation, the rebuild
    consumer, the dead-letter and derived-record producers, and replay from a topic)."""

    kafka_security_protocol: str | None = None
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; unset is PLAINTEXT."""
    kafka_sasl_mechanism: str | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required (with username and password) for SASL_*."""
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_ca_location: str | None = None
    """PEM file of the CA that signed the brokers' certificates (default: the system's CAs)."""
    kafka_ssl_certificate_location: str | None = None
    """Client certificate (PEM) for mutual TLS, with kafka_ssl_key_location."""
    kafka_ssl_key_location: str | None = None
    kafka_ssl_key_password: Secret | None = None

    def kafka_config(self) -> dict[str, str]:
        """librdkafka security properties (plain passwords included: for clients, never for printing)."""
        return kafka_client_config(self)

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets masked: safe to print."""
        return _describe(self)


@dataclass(frozen=True)
class EmitterSettings(KafkaSecuritySettings):
    """Settings of the in-job emitter and of the `jobprov run` / `jobprov emit` commands."""

    url: str = "kafka://127.0.0.1:9092/jobprov.events"
    """Where events go: kafka://host:port/topic (spool fallback), file:///dir (spool only) or noop://."""
    enabled: bool = True
    """False turns emission off entirely (a no-op transport)."""
    spool_dir: str = field(default_factory=_default_spool_dir)
    """Durable local spool used when the broker is unreachable or slow."""
    flush_timeout_s: float = 5.0
    """The longest the emitter may hold a job at exit; what is undelivered by then goes to the spool."""
    delivery_timeout_ms: int = 30000
    """How long the broker may take to acknowledge an event before it is spooled instead."""
    linger_ms: int = 250
    """How long an event may wait for others to share its produce request (a job's end and exit send at once)."""
    heartbeat_interval_s: float = 30.0
    sample_interval_s: float = 1.0
    """Resource sampling interval of `jobprov run`."""
    capture_packages: bool = True
    capture_git: bool = True
    env_allowlist: tuple[str, ...] = DEFAULT_ENV_ALLOWLIST
    """Environment variable names (fnmatch patterns) recorded as provenance; values that look secret are redacted."""
    schema_registry_url: str | None = None
    """If set, events use the Confluent framing with ids from this registry instead of single-object encoding."""


# --- Kafka client security: the same settings, with the same meaning, for emitters and processors ----------

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def kafka_client_config(settings: KafkaSecuritySettings) -> dict[str, str]:
    """The librdkafka (confluent-kafka) security properties of the ``kafka_*`` settings; unset ones are left
    out. The one mapping every confluent-kafka client of jobprov uses. It holds the plain passwords: pass it to
    a client, never print it."""
    mapping: dict[str, str | Secret | None] = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
        "ssl.key.password": settings.kafka_ssl_key_password,
    }
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if value is None:
            continue
        out[key] = value.get() if isinstance(value, Secret) else value
    return out


def _validate_kafka_security(settings: KafkaSecuritySettings, prefix: str) -> None:
    """Protocol and mechanism are known ones; SASL has its mechanism and credentials; nothing is set that the
    chosen protocol would silently ignore."""
    protocol = settings.kafka_security_protocol
    if protocol is not None and protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(
            f"{prefix}kafka_security_protocol", f"{protocol!r}: expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}"
        )
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is not None and mechanism not in KAFKA_SASL_MECHANISMS:
        raise ConfigError(
            f"{prefix}kafka_sasl_mechanism", f"{mechanism!r}: expected one of {', '.join(KAFKA_SASL_MECHANISMS)}"
        )
    effective = protocol or "PLAINTEXT"
    sasl = {
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": settings.kafka_sasl_username,
        "kafka_sasl_password": settings.kafka_sasl_password,
    }
    if effective.startswith("SASL_"):
        for name, value in sasl.items():
            if not (value.get() if isinstance(value, Secret) else value):
                raise ConfigError(f"{prefix}{name}", f"required when kafka_security_protocol is {effective}")
    else:
        for name, value in sasl.items():
            if value is not None:
                raise ConfigError(
                    f"{prefix}{name}",
                    f"is set, but kafka_security_protocol is {effective}: use SASL_PLAINTEXT or SASL_SSL",
                )
    tls = {
        "kafka_ssl_ca_location": settings.kafka_ssl_ca_location,
        "kafka_ssl_certificate_location": settings.kafka_ssl_certificate_location,
        "kafka_ssl_key_location": settings.kafka_ssl_key_location,
        "kafka_ssl_key_password": settings.kafka_ssl_key_password,
    }
    if effective not in ("SSL", "SASL_SSL"):
        for name, value in tls.items():
            if value is not None:
                raise ConfigError(
                    f"{prefix}{name}", f"is set, but kafka_security_protocol is {effective}: use SSL or SASL_SSL"
                )
    if settings.kafka_ssl_certificate_location is not None and settings.kafka_ssl_key_location is None:
        raise ConfigError(f"{prefix}kafka_ssl_key_location", "required with kafka_ssl_certificate_location")
    if settings.kafka_ssl_key_location is not None and settings.kafka_ssl_certificate_location is None:
        raise ConfigError(f"{prefix}kafka_ssl_certificate_location", "required with kafka_ssl_key_location")
    if settings.kafka_ssl_key_password is not None and settings.kafka_ssl_key_location is None:
        raise ConfigError(f"{prefix}kafka_ssl_key_location", "required with kafka_ssl_key_password")


def _describe(settings: Any) -> dict[str, str]:
    return {f.name: _show(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


def _converter(annotation: str) -> Callable[[Any], Any]:
    """How to turn a raw value (text from the environment, or a TOML value) into the field's type."""

    def to_float(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        return float(raw)

    def to_int(raw: Any) -> int:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError("expected an integer")
        return int(raw)

    def to_bool(raw: Any) -> bool:
        return raw if isinstance(raw, bool) else _parse_bool(str(raw))

    def to_tuple(raw: Any) -> tuple[str, ...]:
        if isinstance(raw, list | tuple):
            return tuple(str(x) for x in raw)
        return _parse_list(str(raw))

    def to_secret(raw: Any) -> Secret:
        return raw if isinstance(raw, Secret) else Secret(str(raw))

    def to_str(raw: Any) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"expected text, got {type(raw).__name__}")
        return raw

    base = annotation.replace(" | None", "")
    table: dict[str, Callable[[Any], Any]] = {
        "float": to_float,
        "int": to_int,
        "bool": to_bool,
        "tuple[str, ...]": to_tuple,
        "Secret": to_secret,
        "str": to_str,
    }
    return table[base]


@dataclass(frozen=True)
class ProcessorSettings(KafkaSecuritySettings):
    """Settings of the stream processor (`jobprov process`); environment ``JOBPROV_PROCESSOR_*``."""

    source_url: str = "kafka://127.0.0.1:9092/jobprov.events"
    """The events topic: kafka://host:port[,host:port]/topic."""
    app_id: str = "jobprov-processor"
    """The consumer group: workers with the same id share the partitions."""
    partitions: int = 4
    """Partitions of the events topic (and of every topic the processor creates)."""
    dead_letter_topic: str = "jobprov.dead-letters"
    derived_topic: str = "jobprov.derived"
    """Where the Kafka-topic sink writes derived records (JSON), keyed by record key."""
    batch_size: int = 5000
    """Messages per consume call at most (decoded and folded together; fewer when the topic is quiet)."""
    batch_timeout_s: float = 0.2
    commit_interval_s: float = 1.0
    """How long folded records may wait in the sink's buffer under load before they are made durable and the
    offsets committed; an idle topic flushes at once. Each flush costs one insert per table, so fewer, larger
    flushes are what lets one worker keep up."""
    commit_max_events: int = 20_000
    """Flush (and commit) once this many events wait, whatever the interval."""
    session_timeout_s: float = 10.0
    """How long the group waits for a silent worker before its partitions move (a crashed worker's)."""
    metrics_port: int = 9464
    """Prometheus metrics on 127.0.0.1:PORT; 0 turns the endpoint off."""
    metrics_bind: str = "127.0.0.1"
    comparability_registry: str | None = None
    """TOML file of comparability keys per metric (see docs); default keys: dataset, band, config.hash."""
    lost_after_s: float = 600.0
    allowed_lateness_s: float = 60.0
    """The watermark trails the newest event time seen by this much."""
    sink_flush_timeout_s: float = 30.0
    sink_url: str | None = None
    """Where derived records go: chdb:///dir (embedded ClickHouse), http(s)://host:8123 (a server), or
    unset for the derived-records topic."""
    clickhouse_database: str = "jobprov"
    clickhouse_cluster: str | None = None
    """Production: the cluster for ON CLUSTER DDL and Replicated engines."""
    clickhouse_username: str | None = None
    clickhouse_password: Secret | None = None
    liveness_timeout_s: float = 120.0
    """/healthz on the metrics port answers 503 when the worker's event loop has not turned for this long."""
    migrate_on_start: bool = True
    """Apply the ClickHouse migrations when the worker starts. A deployment whose migrations run once as their
    own job (the Helm chart's hook) turns this off, so N workers don't race the same ON CLUSTER DDL."""
    topic_replication_factor: int = 1
    """Replication factor of the topics the worker creates when they are missing (existing ones are kept)."""


@dataclass(frozen=True)
class ApiSettings:
    """Settings of the query API (`jobprov serve`, `jobprov up`); environment ``JOBPROV_API_*``, TOML ``[api]``.

    Tokens are never configured in clear: each is given by its SHA-256 (hex) and one scope, ``read`` or ``write``
    (write includes read). With no token, reads are open and every write route is refused, and the API may only
    bind to a loopback address; with tokens, every ``/api/`` route needs one."""

    tokens_file: str | None = None
    """File of accepted tokens, one per line: ``SHA256HEX SCOPE`` (``#`` starts a comment)."""
    tokens: tuple[str, ...] = ()
    """More accepted tokens, as ``SHA256HEX:SCOPE`` entries (comma-separated in the environment)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header names accepted besides localhost, 127.0.0.1 and [::1] (DNS rebinding); ``*`` accepts any."""
    cors_origins: tuple[str, ...] = ()
    """Origins (scheme://host[:port]) whose pages may read the API from a browser; none: CORS stays off."""
    query_timeout_s: float = 30.0
    """The longest one request may compute; past it the request answers 503 and its queries stop."""
    max_concurrent_queries: int = 4
    """Requests computing at once; more are refused with 503 rather than queued."""
    max_result_rows: int = 5_000_000
    """Rows one query may answer (a longer series is refused with a 400 saying how to narrow it)."""


@dataclass(frozen=True)
class AlertSettings:
    """Settings of the alert scan and its notifications (`jobprov up`, `jobprov alerts scan`); environment
    ``JOBPROV_ALERTS_*``, TOML ``[alerts]``. Webhook URLs are never logged (their path is often a secret)."""

    webhooks: tuple[str, ...] = field(default=(), repr=False)
    """Receivers of new alerts: ``URL`` (the alert as JSON) or ``slack=URL`` (``{"text": ...}``), comma-separated
    in the environment."""
    scan_interval_s: float = 60.0
    """How often `jobprov up` scans the buckets that received points for new alerts; 0 turns the scan off."""
    webhook_timeout_s: float = 5.0
    webhook_attempts: int = 4
    """Tries per delivery (the first included) when a receiver is down or answers 429/5xx."""
    webhook_backoff_s: float = 1.0
    """The wait before the first retry; each next one waits twice as long."""
    webhook_queue: int = 1000
    """Deliveries waiting at most; past it new ones are dropped (and logged), never blocking the scan."""


def _validate_alerts(settings: AlertSettings) -> None:
    from jobprov.query.notify import parse_webhook  # the one parser of webhook entries

    for i, entry in enumerate(settings.webhooks):
        parse_webhook(entry, f"alerts.webhooks[{i}]")
    if settings.scan_interval_s < 0:
        raise ConfigError("alerts.scan_interval_s", "must be >= 0 (0 turns the scan off)")
    for name in ("webhook_timeout_s", "webhook_backoff_s"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"alerts.{name}", "must be > 0")
    for name in ("webhook_attempts", "webhook_queue"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"alerts.{name}", "must be >= 1")


def _validate_api(settings: ApiSettings) -> None:
    from jobprov.query.tokens import parse_token_entry  # the one parser of token entries

    for i, entry in enumerate(settings.tokens):
        parse_token_entry(entry.replace(":", " ", 1), f"api.tokens[{i}]")
    for host in settings.allowed_hosts:
        if not host or any(c in host for c in "/ @"):
            raise ConfigError("api.allowed_hosts", f"{host!r}: expected a host name or address")
    for origin in settings.cors_origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ConfigError("api.cors_origins", f"{origin!r}: expected scheme://host[:port] (no wildcard)")
    if settings.query_timeout_s <= 0:
        raise ConfigError("api.query_timeout_s", "must be > 0")
    if settings.max_concurrent_queries < 1:
        raise ConfigError("api.max_concurrent_queries", "must be >= 1")
    if settings.max_result_rows < 1:
        raise ConfigError("api.max_result_rows", "must be >= 1")


def _validate_emitter(settings: EmitterSettings) -> None:
    if settings.flush_timeout_s < 0:
        raise ConfigError("flush_timeout_s", "must be >= 0")
    if settings.delivery_timeout_ms <= 0:
        raise ConfigError("delivery_timeout_ms", "must be > 0")
    if not 0 <= settings.linger_ms < settings.delivery_timeout_ms:
        raise ConfigError("linger_ms", f"must be >= 0 and below delivery_timeout_ms ({settings.delivery_timeout_ms})")
    if settings.heartbeat_interval_s <= 0:
        raise ConfigError("heartbeat_interval_s", "must be > 0")
    if settings.sample_interval_s <= 0:
        raise ConfigError("sample_interval_s", "must be > 0")
    scheme = settings.url.split("://", 1)[0] if "://" in settings.url else ""
    if scheme not in {"kafka", "file", "noop"}:
        raise ConfigError("url", f"{settings.url!r}: expected kafka://host:port/topic, file:///dir or noop://")


def _validate_processor(settings: ProcessorSettings) -> None:
    if not settings.source_url.startswith("kafka://"):
        raise ConfigError("processor.source_url", f"{settings.source_url!r}: expected kafka://host:port/topic")
    for name in ("partitions", "batch_size", "commit_max_events"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"processor.{name}", "must be > 0")
    for name in (
        "batch_timeout_s",
        "commit_interval_s",
        "lost_after_s",
        "sink_flush_timeout_s",
        "session_timeout_s",
        "liveness_timeout_s",
    ):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"processor.{name}", "must be > 0")
    if settings.allowed_lateness_s < 0:
        raise ConfigError("processor.allowed_lateness_s", "must be >= 0")
    if not 0 <= settings.metrics_port <= 65535:
        raise ConfigError("processor.metrics_port", "must be a port number")
    if settings.sink_url is not None and not settings.sink_url.startswith(("chdb://", "http://", "https://")):
        raise ConfigError("processor.sink_url", f"{settings.sink_url!r}: expected chdb:///dir or http(s)://host:port")
    if not settings.clickhouse_database.isidentifier():
        raise ConfigError("processor.clickhouse_database", "must be a plain identifier")
    if settings.topic_replication_factor < 1:
        raise ConfigError("processor.topic_replication_factor", "must be >= 1")
    _validate_kafka_security(settings, "processor.")


@dataclass(frozen=True)
class _Section:
    table: str  # TOML table
    env_prefix: str
    cls: type[Any]
    validate: Callable[[Any], None]

    @property
    def fields(self) -> dict[str, dataclasses.Field[Any]]:
        return {f.name: f for f in dataclasses.fields(self.cls)}

    def env_name(self, key: str) -> str:
        return f"{self.env_prefix}{key.upper()}"


_SECTIONS = {
    "emitter": _Section("emitter", ENV_PREFIX, EmitterSettings, _validate_emitter),
    "processor": _Section("processor", f"{ENV_PREFIX}PROCESSOR_", ProcessorSettings, _validate_processor),
    "api": _Section("api", f"{ENV_PREFIX}API_", ApiSettings, _validate_api),
    "alerts": _Section("alerts", f"{ENV_PREFIX}ALERTS_", AlertSettings, _validate_alerts),
}


# Settings that existed once, with what replaces them: named in the error, so an old configuration says what to do.
RETIRED = {
    "processor": {
        "web_port": "removed: the worker serves only its metrics and health endpoint (processor.metrics_port)",
        "data_dir": "removed: the worker keeps no local state; it resumes from the store's checkpoints",
    }
}


def _retired(section_name: str, key: str, where: str) -> None:
    reason = RETIRED.get(section_name, {}).get(key)
    if reason is not None:
        raise ConfigError(where, reason)


def known_env() -> dict[str, tuple[str, str]]:
    """Every settings variable: name -> (section, key)."""
    return {s.env_name(k): (name, k) for name, s in _SECTIONS.items() for k in s.fields}


def _load(
    section_name: str,
    overrides: Mapping[str, Any] | None,
    env: Mapping[str, str] | None,
    config_file: str | Path | None,
) -> Any:
    section = _SECTIONS[section_name]
    fields = section.fields
    environ = os.environ if env is None else env
    raw: dict[str, tuple[str, Any]] = {}  # field -> (where it came from, raw value)

    path = config_file or environ.get("JOBPROV_CONFIG")
    if path:
        for key, value in _read_toml(Path(path), section.table).items():
            raw[key] = (f"{path} [{section.table}] {key}", value)

    known = known_env()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in RUNTIME_ENV:
            continue
        if name not in known:
            for retired_section, section in _SECTIONS.items():
                if name.startswith(section.env_prefix):
                    _retired(retired_section, name[len(section.env_prefix) :].lower(), name)
            raise ConfigError(name, "unknown setting (see `jobprov config show` for the known ones)")
        owner, key = known[name]
        if owner == section_name:
            raw[key] = (name, value)

    for key, value in (overrides or {}).items():
        if key not in fields:
            _retired(section_name, key, key)
            raise ConfigError(key, "unknown setting")
        if value is not None:
            raw[key] = (key, value)

    values: dict[str, Any] = {}
    for key, (source, value) in raw.items():
        try:
            values[key] = _converter(str(fields[key].type))(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(source, str(exc)) from exc
    settings = section.cls(**values)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f.name, f"must be a finite number, got {value}")
    section.validate(settings)
    return settings


def load_emitter_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> EmitterSettings:
    """Build emitter settings; raise :class:`ConfigError` naming the first bad or unknown key."""
    settings: EmitterSettings = _load("emitter", overrides, env, config_file)
    return settings


def load_processor_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> ProcessorSettings:
    """Build stream processor settings; raise :class:`ConfigError` naming the first bad or unknown key."""
    settings: ProcessorSettings = _load("processor", overrides, env, config_file)
    return settings


def load_api_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> ApiSettings:
    """Build query API settings; raise :class:`ConfigError` naming the first bad or unknown key."""
    settings: ApiSettings = _load("api", overrides, env, config_file)
    return settings


def load_alert_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> AlertSettings:
    """Build alert settings; raise :class:`ConfigError` naming the first bad or unknown key."""
    settings: AlertSettings = _load("alerts", overrides, env, config_file)
    return settings


def _read_toml(path: Path, table_name: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("JOBPROV_CONFIG", f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("JOBPROV_CONFIG", f"{path} is not valid TOML: {exc}") from exc
    unknown_tables = sorted(set(document) - set(_SECTIONS))
    if unknown_tables:
        raise ConfigError(f"{path} [{unknown_tables[0]}]", "unknown table")
    for name, section in _SECTIONS.items():
        table = document.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path} {name}", "expected a table")
        for key in table:
            if key not in section.fields:
                _retired(name, key, f"{path} [{name}] {key}")
                raise ConfigError(f"{path} [{name}] {key}", "unknown setting")
    result: dict[str, Any] = document.get(table_name, {})
    return result
