"""The processor's Kafka security settings: validation, the confluent-kafka configuration every librdkafka
client gets, the worker's consumer included. No broker: librdkafka checks its configuration (and loads the TLS
files) when a client is created."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobprov.errors import ConfigError
from jobprov.settings import (
    KAFKA_SASL_MECHANISMS,
    KAFKA_SECURITY_PROTOCOLS,
    EmitterSettings,
    ProcessorSettings,
    Secret,
    kafka_client_config,
    known_env,
    load_emitter_settings,
    load_processor_settings,
)
from jobprov.stream_processors.records import Record

PASSWORD = "Tr0ub4dor&3-sasl-horse"
KEY_PASSWORD = "k3y-battery-staple"

SASL_SSL_ENV = {
    "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME": "jobprov-worker",
    "JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD": PASSWORD,
}

NEW_SETTINGS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "kafka_ssl_certificate_location",
    "kafka_ssl_key_location",
    "kafka_ssl_key_password",
    "topic_replication_factor",
)


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path  # encrypted with KEY_PASSWORD


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a client certificate signed by it, with a password-protected key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("jobprov test CA"))
        .issuer_name(name("jobprov test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(name("jobprov-worker"))
        .issuer_name(ca_cert.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.crt", folder / "tls.crt", folder / "tls.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return pki


def mtls_env(pki: Pki, protocol: str = "SSL") -> dict[str, str]:
    return {
        "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": protocol,
        "JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION": str(pki.ca),
        "JOBPROV_PROCESSOR_KAFKA_SSL_CERTIFICATE_LOCATION": str(pki.cert),
        "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_LOCATION": str(pki.key),
        "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
    }


def everything_shown(settings: ProcessorSettings) -> str:
    return repr(settings) + str(settings) + repr(settings.describe())


# ---- the settings ---------------------------------------------------------------------------------------------


def test_the_settings_are_processor_fields_with_env_names() -> None:
    known = known_env()
    for key in NEW_SETTINGS:
        assert known[f"JOBPROV_PROCESSOR_{key.upper()}"] == ("processor", key)


def test_defaults_are_plaintext_and_replication_factor_one() -> None:
    settings = load_processor_settings(env={})
    assert settings.kafka_security_protocol is None
    assert settings.topic_replication_factor == 1
    assert settings.kafka_config() == {}


def test_explicit_plaintext() -> None:
    settings = load_processor_settings(env={"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
    assert settings.kafka_config() == {"security.protocol": "PLAINTEXT"}


def test_sasl_ssl_from_the_environment() -> None:
    settings = load_processor_settings(env={**SASL_SSL_ENV, "JOBPROV_PROCESSOR_TOPIC_REPLICATION_FACTOR": "3"})
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == "jobprov-worker"
    assert isinstance(settings.kafka_sasl_password, Secret)
    assert settings.kafka_sasl_password.get() == PASSWORD
    assert settings.topic_replication_factor == 3
    assert settings.kafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "jobprov-worker",
        "sasl.password": PASSWORD,
    }


def test_settings_from_toml(tmp_path: Path, pki: Pki) -> None:
    path = tmp_path / "jobprov.toml"
    path.write_text(
        "[processor]\n"
        'kafka_security_protocol = "SASL_SSL"\n'
        'kafka_sasl_mechanism = "PLAIN"\n'
        'kafka_sasl_username = "worker"\n'
        f'kafka_sasl_password = "{PASSWORD}"\n'
        f'kafka_ssl_ca_location = "{pki.ca}"\n'
        "topic_replication_factor = 2\n"
    )
    settings = load_processor_settings(env={}, config_file=path)
    assert settings.kafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "worker",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki.ca),
    }
    assert settings.topic_replication_factor == 2
    assert PASSWORD not in everything_shown(settings)


def test_secrets_are_never_shown(pki: Pki) -> None:
    settings = load_processor_settings(env={**SASL_SSL_ENV, **mtls_env(pki, "SASL_SSL")})
    shown = everything_shown(settings)
    assert PASSWORD not in shown
    assert KEY_PASSWORD not in shown
    described = settings.describe()
    assert described["kafka_sasl_username"] == "jobprov-worker"
    assert described["kafka_security_protocol"] == "SASL_SSL"
    assert described["kafka_ssl_ca_location"] == str(pki.ca)
    assert described["kafka_sasl_password"] not in ("", PASSWORD)  # it shows that one is set, not what it is
    assert described["kafka_ssl_key_password"] not in ("", KEY_PASSWORD)
    assert set(described) >= set(NEW_SETTINGS)


@pytest.mark.parametrize("protocol", KAFKA_SECURITY_PROTOCOLS)
def test_every_protocol_is_accepted_with_what_it_needs(protocol: str) -> None:
    env = {**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": protocol}
    if not protocol.startswith("SASL_"):
        env = {"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": protocol}
    assert load_processor_settings(env=env).kafka_config()["security.protocol"] == protocol


@pytest.mark.parametrize("mechanism", KAFKA_SASL_MECHANISMS)
def test_every_mechanism_is_accepted(mechanism: str) -> None:
    settings = load_processor_settings(env={**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM": mechanism})
    assert settings.kafka_config()["sasl.mechanism"] == mechanism


BAD = [
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "TLS"}, "processor.kafka_security_protocol", id="protocol"
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"},
        "processor.kafka_security_protocol",
        id="protocol-lowercase",
    ),
    pytest.param(
        {**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM": "GSSAPI"},
        "processor.kafka_sasl_mechanism",
        id="mechanism",
    ),
    pytest.param(
        {k: v for k, v in SASL_SSL_ENV.items() if not k.endswith("_MECHANISM")},
        "processor.kafka_sasl_mechanism",
        id="sasl-without-mechanism",
    ),
    pytest.param(
        {k: v for k, v in SASL_SSL_ENV.items() if not k.endswith("_USERNAME")},
        "processor.kafka_sasl_username",
        id="sasl-without-username",
    ),
    pytest.param(
        {**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME": ""},
        "processor.kafka_sasl_username",
        id="sasl-empty-username",
    ),
    pytest.param(
        {k: v for k, v in SASL_SSL_ENV.items() if not k.endswith("_PASSWORD")},
        "processor.kafka_sasl_password",
        id="sasl-without-password",
    ),
    pytest.param(
        {**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
        | {"JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD": ""},
        "processor.kafka_sasl_password",
        id="sasl-empty-password",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME": "worker"},
        "processor.kafka_sasl_username",
        id="sasl-credentials-without-sasl",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL", "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM": "PLAIN"},
        "processor.kafka_sasl_mechanism",
        id="mechanism-with-ssl",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION": "/etc/ca.crt"},
        "processor.kafka_ssl_ca_location",
        id="tls-file-without-tls",
    ),
    pytest.param(
        {**SASL_SSL_ENV, "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
        | {"JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION": "/etc/ca.crt"},
        "processor.kafka_ssl_ca_location",
        id="tls-file-with-sasl-plaintext",
    ),
    pytest.param(
        {
            "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL",
            "JOBPROV_PROCESSOR_KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/tls.crt",
        },
        "processor.kafka_ssl_key_location",
        id="certificate-without-key",
    ),
    pytest.param(
        {
            "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL",
            "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_LOCATION": "/etc/tls.key",
        },
        "processor.kafka_ssl_certificate_location",
        id="key-without-certificate",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL", "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD": "x"},
        "processor.kafka_ssl_key_location",
        id="key-password-without-key",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_TOPIC_REPLICATION_FACTOR": "0"}, "processor.topic_replication_factor", id="rf-zero"
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_TOPIC_REPLICATION_FACTOR": "three"},
        "JOBPROV_PROCESSOR_TOPIC_REPLICATION_FACTOR",
        id="rf-text",
    ),
    pytest.param(
        {"JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISMS": "PLAIN"}, "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISMS", id="typo"
    ),
]


@pytest.mark.parametrize(("env", "key"), BAD)
def test_bad_security_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_processor_settings(env=env)
    assert info.value.key == key
    assert key in str(info.value)
    assert PASSWORD not in str(info.value)


def test_emitter_and_processor_share_one_mapping() -> None:
    """The same kafka_* values give the same librdkafka properties, whichever component reads them."""
    emitter_env = {name.replace("JOBPROV_PROCESSOR_", "JOBPROV_"): value for name, value in SASL_SSL_ENV.items()}
    emitter = load_emitter_settings(env=emitter_env)
    processor = load_processor_settings(env=SASL_SSL_ENV)
    assert isinstance(emitter, EmitterSettings)
    assert emitter.kafka_config() == processor.kafka_config() == kafka_client_config(processor)


# ---- librdkafka accepts the configuration ------------------------------------------------------------------------


def librdkafka_clients(settings: ProcessorSettings) -> list[Any]:
    """Every confluent-kafka client the processor makes, created with the settings (nothing is sent: the
    bootstrap address answers nobody; librdkafka checks the configuration and loads the TLS files here)."""
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

    from jobprov.sinks.kafka_topic import KafkaTopicSink
    from jobprov.stream_processors.dead_letters import DeadLetterTopic
    from jobprov.stream_processors.worker import consumer_config

    config = settings.kafka_config()
    return [
        DeadLetterTopic("127.0.0.1:1", "dead", config),
        KafkaTopicSink("127.0.0.1:1", "derived", config),
        AdminClient({"bootstrap.servers": "127.0.0.1:1", "log_level": 0, **config}),
        Consumer(consumer_config(settings)),
    ]


def test_librdkafka_accepts_sasl_ssl_with_mutual_tls(pki: Pki) -> None:
    settings = load_processor_settings(env={**SASL_SSL_ENV, **mtls_env(pki, "SASL_SSL")})
    assert settings.kafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "jobprov-worker",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.cert),
        "ssl.key.location": str(pki.key),
        "ssl.key.password": KEY_PASSWORD,
    }
    assert len(librdkafka_clients(settings)) == 4


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    from jobprov.stream_processors.dead_letters import DeadLetterTopic

    settings = load_processor_settings(
        env={
            "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL",
            "JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION": str(tmp_path / "absent.crt"),
        }
    )
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location"):
        DeadLetterTopic("127.0.0.1:1", "dead", settings.kafka_config())


# ---- the worker's consumer ------------------------------------------------------------------------------------------


class _Nowhere:
    """A sink and dead-letter target that keeps nothing (the worker is built, never run)."""

    name = "nowhere"

    def send(self, value: bytes, reason: str, detail: str, topic: str, partition: int, offset: int) -> None: ...

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self, timeout: float) -> None: ...

    def close(self) -> None: ...


def _worker(settings: Any) -> Any:
    from jobprov.stream_processors.fold import FoldContext
    from jobprov.stream_processors.processor import Processor
    from jobprov.stream_processors.worker import Worker

    return Worker(settings, Processor(_Nowhere(), _Nowhere(), FoldContext()))


def test_the_worker_consumer_gets_the_security_settings(pki: Pki) -> None:
    from jobprov.stream_processors.worker import consumer_config

    settings = load_processor_settings(env={**SASL_SSL_ENV, **mtls_env(pki, "SASL_SSL")})
    config = consumer_config(settings)
    assert {key: config[key] for key in settings.kafka_config()} == settings.kafka_config()
    assert config["group.id"] == settings.app_id
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
    assert config["enable.auto.commit"] is False
    worker = _worker(settings)  # librdkafka loads the certificate files when the consumer is created
    worker.consumer.close()


def test_the_worker_names_a_missing_ca_file(tmp_path: Path) -> None:
    settings = load_processor_settings(
        env={
            "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL": "SSL",
            "JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION": str(tmp_path / "absent.crt"),
        }
    )
    with pytest.raises(ConfigError, match=r"ssl\.ca\.location"):
        _worker(settings)


def test_a_wrong_key_password_is_a_config_error_without_the_password(pki: Pki) -> None:
    env = {**mtls_env(pki), "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD": "wrong-" + KEY_PASSWORD}
    with pytest.raises(ConfigError) as info:
        _worker(load_processor_settings(env=env))
    assert KEY_PASSWORD not in str(info.value)
