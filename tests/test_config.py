"""Settings: defaults, URL choice per port, and one clear error line per bad field."""

from __future__ import annotations

import pytest

from ludex.config import load_settings, redact_url
from ludex.errors import ConfigError


def test_defaults_are_the_embedded_backends() -> None:
    settings = load_settings()
    assert settings.backends() == {
        "store": "sqlite",
        "analytics": "chdb",
        "bus": "memory",
        "cache": "memory",
        "chain": "anvil",
    }


@pytest.mark.parametrize(
    ("field", "url", "kind"),
    [
        ("store_url", "postgresql://u:p@db:5432/ludex", "postgresql"),
        ("store_url", "mysql://u:p@db:3306/ludex", "mysql"),
        ("store_url", "sqlite:///:memory:", "sqlite"),
        ("analytics_url", "clickhouse://default:@ch:8123/ludex", "clickhouse"),
        ("bus_url", "kafka://k1:9092,k2:9092", "kafka"),
        ("cache_url", "redis://cache:6379/0", "redis"),
        ("chain_url", "https://rpc.example.org", "https"),
    ],
)
def test_production_urls_choose_their_backend(field: str, url: str, kind: str) -> None:
    settings = load_settings(**{field: url})
    port = {
        "store_url": "store",
        "analytics_url": "analytics",
        "bus_url": "bus",
        "cache_url": "cache",
        "chain_url": "chain",
    }[field]
    assert settings.backends()[port] == kind


@pytest.mark.parametrize(
    ("env", "value", "accepted"),
    [
        ("LUDEX_STORE_URL", "oracle://db/x", "postgresql://"),
        ("LUDEX_STORE_URL", "postgresql:///nohost", "has no host"),
        ("LUDEX_ANALYTICS_URL", "duckdb://x", "chdb://"),
        ("LUDEX_BUS_URL", "rabbitmq://x", "kafka://HOST:PORT"),
        ("LUDEX_BUS_URL", "kafka://broker", "is not HOST:PORT"),
        ("LUDEX_CACHE_URL", "memcached://x", "redis://"),
        ("LUDEX_CHAIN_URL", "ws://node:8546", "anvil://"),
    ],
)
def test_bad_url_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.count("\n") == 0, message
    assert message.startswith(f"{env}: ")
    assert accepted in message


def test_two_bad_fields_give_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUDEX_BUS_URL", "nats://x")
    monkeypatch.setenv("LUDEX_HTTP_PORT", "70000")
    with pytest.raises(ConfigError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert {line.split(":")[0] for line in lines} == {"LUDEX_BUS_URL", "LUDEX_HTTP_PORT"}


def test_passwords_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUDEX_STORE_URL", "oracle://admin:hunter2@db/x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_production_refuses_local_defaults() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environment="production", chain_url="https://rpc.example.org")
    assert "LUDEX_JWT_SECRET" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_settings(environment="production", jwt_secret="x" * 32)
    assert "anvil://" in str(info.value)


def test_a_short_jwt_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="LUDEX_JWT_SECRET") as caught:
        load_settings(jwt_secret="short-secret-value")
    assert "short-secret-value" not in str(caught.value)
