"""Settings: OF_* variables into Structs with precise errors; secrets never shown."""

from __future__ import annotations

import logging

import pytest

from ofcommon import logs
from ofcommon.settings import (
    BaseSettings,
    OwnedStageSettings,
    Secret,
    SettingsError,
    load_settings,
    redacted_view,
)


def test_defaults_and_types() -> None:
    s = load_settings(OwnedStageSettings, {})
    assert s.metrics_port == 0
    assert s.lease_ttl_s == 4.0
    s = load_settings(OwnedStageSettings, {"OF_METRICS_PORT": "9100", "OF_LEASE_TTL_S": "6.5"})
    assert (s.metrics_port, s.lease_ttl_s) == (9100, 6.5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OF_METRICS_PORT": "70000"}, "OF_METRICS_PORT: expected int <= 65535, got '70000'"),
        ({"OF_METRICS_PORT": "nine"}, "OF_METRICS_PORT: expected int, got 'nine'"),
        ({"OF_LEASE_TTL_S": "0"}, "OF_LEASE_TTL_S: expected float >= 1.0, got '0'"),
        ({"OF_READ_COUNT": "0"}, "OF_READ_COUNT: expected int >= 1, got '0'"),
        ({"OF_LOG_LEVEL": "LOUD"}, "OF_LOG_LEVEL: invalid enum value 'LOUD', got 'LOUD'"),
    ],
)
def test_errors_name_the_variable_and_the_rule(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(OwnedStageSettings, env)
    assert str(err.value) == message


def test_unknown_variable_gets_a_suggestion() -> None:
    with pytest.raises(
        SettingsError, match=r"OF_REDIS_ULR: unknown variable \(did you mean OF_REDIS_URL\?\)"
    ):
        load_settings(
            BaseSettings, {"OF_REDIS_ULR": "redis://x"}, known=["redis_url", "bybit_depth"]
        )


def test_other_services_variables_are_ignored() -> None:
    s = load_settings(BaseSettings, {"OF_BYBIT_DEPTH": "200"}, known=["bybit_depth"])
    assert isinstance(s, BaseSettings)


def test_secret_field_error_never_echoes_the_value() -> None:
    class WithNumberSecret(BaseSettings, kw_only=True, frozen=True):
        pin: int = 0

    with pytest.raises(SettingsError) as err:
        load_settings(WithNumberSecret, {"OF_PIN": "hunter2"})
    assert "OF_PIN" in str(err.value)


def test_secrets_are_redacted_in_repr_and_view() -> None:
    s = load_settings(
        BaseSettings,
        {
            "OF_REDIS_URL": "redis://:s3cr3t-pw@redis:6379/0",
            "OF_DATABASE_URL": "postgresql://u:pg-pw@db/x",
        },
    )
    text = repr(s) + str(redacted_view(s))
    assert "s3cr3t-pw" not in text
    assert "pg-pw" not in text
    assert "redis://:***@redis:6379/0" in text
    assert s.redis_url.get() == "redis://:s3cr3t-pw@redis:6379/0"
    assert str(Secret("token-123")) == "***"


def test_logs_scrub_every_loaded_secret(capsys: pytest.CaptureFixture[str]) -> None:
    load_settings(BaseSettings, {"OF_REDIS_URL": "redis://:log-leak-pw@h:1/0"})
    logs.configure("test", "w1", level="INFO", fmt="json")
    try:
        logging.getLogger("t").info("connecting to redis://:log-leak-pw@h:1/0 with log-leak-pw")
        logging.getLogger("t").info("extra field", extra={"url": "redis://:log-leak-pw@h:1/0"})
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "log-leak-pw" not in err
    assert err.count("***") >= 3


def test_socket_timeout_is_derived_from_the_longest_blocking_read() -> None:
    # redis-py's own default (5 s) is shorter than a 6 s block: idle reads would time out.
    s = load_settings(OwnedStageSettings, {"OF_BLOCK_MS": "6000"})
    assert s.socket_timeout_s() == 6.0 + 5.0
    assert load_settings(OwnedStageSettings, {}).socket_timeout_s() == 1.0 + 5.0
    assert load_settings(BaseSettings, {}).socket_timeout_s() == 1.0 + 5.0
    explicit = {"OF_BLOCK_MS": "6000", "OF_REDIS_SOCKET_TIMEOUT_S": "8"}
    assert load_settings(OwnedStageSettings, explicit).socket_timeout_s() == 8.0


@pytest.mark.parametrize("timeout", ["5", "6"])
def test_a_socket_timeout_not_above_the_block_is_refused_at_start(timeout: str) -> None:
    env = {"OF_BLOCK_MS": "6000", "OF_REDIS_SOCKET_TIMEOUT_S": timeout}
    with pytest.raises(SettingsError) as err:
        load_settings(OwnedStageSettings, env)
    assert f"OF_REDIS_SOCKET_TIMEOUT_S={timeout} must exceed" in str(err.value)
    assert "OF_BLOCK_MS" in str(err.value)
