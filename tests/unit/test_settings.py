"""Settings: defaults, TOML, environment and overrides, strict validation, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobprov.errors import ConfigError
from jobprov.settings import DEFAULT_ENV_ALLOWLIST, EmitterSettings, Secret, load_emitter_settings

PASSWORD = "Tr0ub4dor&3-correct-horse"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobprov.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_emitter_settings(env={"XDG_STATE_HOME": str(tmp_path)})
    assert settings.url == "kafka://127.0.0.1:9092/jobprov.events"
    assert settings.enabled is True
    assert settings.flush_timeout_s == 5.0
    assert settings.delivery_timeout_ms == 30000
    assert settings.linger_ms == 250
    assert settings.heartbeat_interval_s == 30.0
    assert settings.capture_packages is True
    assert settings.env_allowlist == DEFAULT_ENV_ALLOWLIST
    assert settings.schema_registry_url is None
    assert settings.kafka_sasl_password is None
    assert settings.kafka_config() == {}


def test_env_values_are_converted() -> None:
    settings = load_emitter_settings(
        env={
            "JOBPROV_URL": "file:///var/spool/jobprov",
            "JOBPROV_ENABLED": "off",
            "JOBPROV_FLUSH_TIMEOUT_S": "2.5",
            "JOBPROV_DELIVERY_TIMEOUT_MS": "1500",
            "JOBPROV_CAPTURE_GIT": "no",
            "JOBPROV_ENV_ALLOWLIST": "USER, SLURM_*,,CI",
        }
    )
    assert settings.url == "file:///var/spool/jobprov"
    assert settings.enabled is False
    assert settings.flush_timeout_s == 2.5
    assert settings.delivery_timeout_ms == 1500
    assert settings.capture_git is False
    assert settings.env_allowlist == ("USER", "SLURM_*", "CI")


def test_toml_file(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[emitter]\nurl = "noop://"\nflush_timeout_s = 1\ncapture_packages = false\nenv_allowlist = ["USER", "CI_*"]\n',
    )
    settings = load_emitter_settings(env={}, config_file=path)
    assert settings.url == "noop://"
    assert settings.flush_timeout_s == 1.0
    assert settings.capture_packages is False
    assert settings.env_allowlist == ("USER", "CI_*")


def test_toml_file_from_jobprov_config(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[emitter]\nheartbeat_interval_s = 7.5\n")
    settings = load_emitter_settings(env={"JOBPROV_CONFIG": str(path)})
    assert settings.heartbeat_interval_s == 7.5


def test_env_overrides_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[emitter]\nurl = "noop://"\nflush_timeout_s = 1.0\n')
    settings = load_emitter_settings(env={"JOBPROV_FLUSH_TIMEOUT_S": "3"}, config_file=path)
    assert settings.flush_timeout_s == 3.0
    assert settings.url == "noop://"  # from the file, not overridden


def test_overrides_beat_env_and_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[emitter]\nflush_timeout_s = 1.0\nurl = "noop://"\n')
    settings = load_emitter_settings(
        {"flush_timeout_s": 9.0, "url": None},  # None means "not given", so it does not override
        env={"JOBPROV_FLUSH_TIMEOUT_S": "3"},
        config_file=path,
    )
    assert settings.flush_timeout_s == 9.0
    assert settings.url == "noop://"


def test_unknown_env_variable_is_rejected() -> None:
    with pytest.raises(ConfigError, match="JOBPROV_FOO") as info:
        load_emitter_settings(env={"JOBPROV_FOO": "1"})
    assert info.value.key == "JOBPROV_FOO"


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="flush_timeout"):
        load_emitter_settings({"flush_timeout": 1.0}, env={})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBPROV_FLUSH_TIMEOUT_S", "abc"),
        ("JOBPROV_DELIVERY_TIMEOUT_MS", "1.5"),
        ("JOBPROV_ENABLED", "maybe"),
        ("JOBPROV_CAPTURE_GIT", "2"),
    ],
)
def test_bad_env_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_emitter_settings(env={name: value})
    assert name in str(info.value)
    assert info.value.key == name


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("JOBPROV_FLUSH_TIMEOUT_S", "-1", "flush_timeout_s"),
        ("JOBPROV_DELIVERY_TIMEOUT_MS", "0", "delivery_timeout_ms"),
        ("JOBPROV_LINGER_MS", "-1", "linger_ms"),
        ("JOBPROV_LINGER_MS", "30000", "linger_ms"),  # librdkafka wants it below message.timeout.ms
        ("JOBPROV_HEARTBEAT_INTERVAL_S", "0", "heartbeat_interval_s"),
    ],
)
def test_out_of_range_value_names_the_setting(name: str, value: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_emitter_settings(env={name: value})


def test_nan_flush_timeout_is_rejected() -> None:
    # A NaN deadline never passes: the emitter's flush would wait without bound.
    with pytest.raises(ConfigError, match="flush_timeout_s"):
        load_emitter_settings(env={"JOBPROV_FLUSH_TIMEOUT_S": "nan"})


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[emitter]\nurl = "noop://"\nflush_timeout = 1.0\n')
    with pytest.raises(ConfigError, match="flush_timeout") as info:
        load_emitter_settings(env={}, config_file=path)
    assert str(path) in str(info.value)


def test_unknown_toml_table_is_rejected(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[emitter]\nurl = "noop://"\n\n[emmiter]\nurl = "noop://"\n')
    with pytest.raises(ConfigError, match="emmiter"):
        load_emitter_settings(env={}, config_file=path)


def test_bad_toml_value_names_the_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[emitter]\nurl = 5\n")
    with pytest.raises(ConfigError, match=r"\[emitter\] url"):
        load_emitter_settings(env={}, config_file=path)


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[emitter\nurl = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_emitter_settings(env={}, config_file=path)


def test_missing_toml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_emitter_settings(env={"JOBPROV_CONFIG": str(tmp_path / "absent.toml")})


@pytest.mark.parametrize("url", ["http://broker:9092/topic", "kafka", "127.0.0.1:9092", "", "files:///x"])
def test_bad_url_scheme_is_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        load_emitter_settings(env={"JOBPROV_URL": url})


@pytest.mark.parametrize("url", ["kafka://broker:9092/topic", "file:///var/spool", "noop://"])
def test_good_urls(url: str) -> None:
    assert load_emitter_settings(env={"JOBPROV_URL": url}).url == url


@pytest.mark.parametrize("name", ["JOBPROV_JOB_ID", "JOBPROV_ATTEMPT", "JOBPROV_PARENT_STEP", "JOBPROV_TEST_BACKEND"])
def test_runtime_variables_are_not_settings_but_not_rejected(name: str) -> None:
    settings = load_emitter_settings(env={name: "outer-job"})
    assert settings == load_emitter_settings(env={})


def test_other_environment_variables_are_ignored() -> None:
    assert load_emitter_settings(env={"JOBPROVX": "1", "HOME": "/x", "jobprov_url": "bad"}).url.startswith("kafka://")


# --- secrets ----------------------------------------------------------------------------------------------


@pytest.fixture
def secret_settings() -> EmitterSettings:
    return load_emitter_settings(
        env={
            "JOBPROV_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "JOBPROV_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "JOBPROV_KAFKA_SASL_USERNAME": "jobprov",
            "JOBPROV_KAFKA_SASL_PASSWORD": PASSWORD,
            "JOBPROV_KAFKA_SSL_KEY_PASSWORD": "k3y-" + PASSWORD,
        }
    )


def test_secret_is_never_shown(secret_settings: EmitterSettings) -> None:
    assert isinstance(secret_settings.kafka_sasl_password, Secret)
    assert PASSWORD not in repr(secret_settings)
    assert PASSWORD not in str(secret_settings)
    described = secret_settings.describe()
    assert PASSWORD not in repr(described)
    assert described["kafka_sasl_username"] == "jobprov"
    assert described["kafka_sasl_password"] != ""  # it shows that a password is set, not what it is


def test_secret_from_toml_is_never_shown(tmp_path: Path) -> None:
    path = write_toml(tmp_path, f'[emitter]\nkafka_sasl_password = "{PASSWORD}"\n')
    settings = load_emitter_settings(env={}, config_file=path)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in repr(settings.describe())
    assert settings.kafka_config()["sasl.password"] == PASSWORD


def test_kafka_config_passes_the_plain_password(secret_settings: EmitterSettings) -> None:
    assert secret_settings.kafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "jobprov",
        "sasl.password": PASSWORD,
        "ssl.key.password": "k3y-" + PASSWORD,
    }


def test_secret_value_object() -> None:
    secret = Secret(PASSWORD)
    assert secret.get() == PASSWORD
    assert PASSWORD not in repr(secret)
    assert PASSWORD not in f"{secret}"
    assert secret == Secret(PASSWORD)
    assert secret != Secret("other")
