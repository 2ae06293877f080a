"""Settings: one typed object, read from ``LUDEX_*`` environment variables (and ``.env``).

Each backend is chosen by a URL; a bad URL or value fails at start-up with one
line per field naming the variable and what it accepts. See docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ludex.errors import ConfigError

ENV_PREFIX = "LUDEX_"

# field -> (accepted schemes, human description of the accepted forms)
URL_FIELDS: dict[str, tuple[frozenset[str], str]] = {
    "store_url": (
        frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"}),
        "sqlite:///PATH, sqlite:///:memory:, postgresql://USER:PASS@HOST:PORT/DB "
        "or mysql://USER:PASS@HOST:PORT/DB",
    ),
    "analytics_url": (
        frozenset({"chdb", "clickhouse", "clickhouses"}),
        "chdb://PATH (embedded, chdb://:memory: for a throw-away store) "
        "or clickhouse://USER:PASS@HOST:PORT/DB",
    ),
    "bus_url": (frozenset({"memory", "kafka"}), "memory:// or kafka://HOST:PORT[,HOST:PORT...]"),
    "cache_url": (frozenset({"memory", "redis", "rediss"}), "memory:// or redis://HOST:PORT/DB"),
    "chain_url": (
        frozenset({"anvil", "http", "https"}),
        "anvil:// (start a local anvil node) or an http(s):// JSON-RPC URL",
    ),
    "indexer_rpc_urls": (
        frozenset({"http", "https"}),
        "http(s):// JSON-RPC URLs, comma-separated or a JSON list (the first is preferred)",
    ),
}


LOCAL_JWT_SECRET: Final = "local-only-not-a-secret-never-use-in-production"  # noqa: S105
"""The default access-token secret: refused with LUDEX_ENVIRONMENT=production."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _check_url(field: str, raw: str) -> str:
    schemes, accepted = URL_FIELDS[field]
    parts = urlsplit(raw)
    value = redact_url(raw)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ValueError(f"{value!r} is not accepted; use {accepted}")
    needs_host = scheme in {
        "postgresql",
        "postgres",
        "mysql",
        "mariadb",
        "clickhouse",
        "clickhouses",
        "kafka",
        "redis",
        "rediss",
        "http",
        "https",
    }
    if needs_host and not parts.hostname:
        raise ValueError(f"{value!r} has no host; use {accepted}")
    if scheme == "sqlite" and not value.startswith("sqlite:///"):
        raise ValueError(f"{value!r} must start with sqlite:/// ; use {accepted}")
    if scheme == "kafka":
        for hostport in parts.netloc.split(","):
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{value!r}: {hostport!r} is not HOST:PORT; use {accepted}")
    return raw


class Settings(BaseSettings):
    """Every setting of ludex. Environment variables are ``LUDEX_<FIELD>`` in upper case."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    environment: Literal["local", "test", "production"] = "local"
    service_name: str = Field(default="ludex", min_length=1, max_length=64)
    namespace: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._-]*$")
    data_dir: Path = Path("var")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)

    store_url: str = "sqlite:///var/ludex.db"
    store_pool_size: int = Field(default=10, ge=1, le=1000)
    analytics_url: str = "chdb://var/olap"
    bus_url: str = "memory://"
    bus_partitions: int = Field(default=8, ge=1, le=1024)
    cache_url: str = "memory://"
    chain_url: str = "anvil://"
    anvil_port: int = Field(default=8545, ge=1, le=65535)
    anvil_bin: str = "node_modules/.bin/anvil"

    outbox_batch_size: int = Field(default=500, ge=1, le=100_000)
    outbox_poll_interval: float = Field(default=0.05, gt=0, le=60)
    outbox_lease_seconds: float = Field(default=10.0, gt=0, le=3600)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    metrics_enabled: bool = True
    demo: bool = False
    demo_tables: int = Field(default=3, ge=1, le=100)
    demo_players_per_table: int = Field(default=4, ge=2, le=10)
    demo_interval: float = Field(default=1.0, gt=0, le=3600)
    demo_summary_every: float = Field(default=10.0, gt=0, le=3600)

    jwt_secret: SecretStr = SecretStr(LOCAL_JWT_SECRET)
    siwe_domain: str = Field(default="localhost:8000", min_length=1, max_length=253)
    siwe_chain_id: int = Field(default=31337, ge=1)
    access_token_seconds: int = Field(default=900, ge=10, le=86_400)
    refresh_token_seconds: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    admin_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"]
    )
    auth_rate_capacity: int = Field(default=30, ge=1, le=100_000)
    auth_rate_per_second: float = Field(default=1.0, gt=0, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    api_rate_capacity: int = Field(default=120, ge=1, le=100_000)
    api_rate_per_second: float = Field(default=20.0, gt=0, le=100_000)
    stream_rate_capacity: int = Field(default=40, ge=1, le=100_000)
    stream_rate_per_second: float = Field(default=10.0, gt=0, le=100_000)
    stream_compression: bool = False

    gameserver_enabled: bool = True
    gameserver_lease_seconds: float = Field(default=10.0, ge=1, le=600)
    gameserver_max_tables: int = Field(default=1000, ge=1, le=100_000)

    provider_timestamp_window: float = Field(default=30.0, gt=0, le=3600)
    secrets_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    wallet_cache_seconds: float = Field(default=1.0, ge=0, le=3600)

    # on-chain settlement, deposits and withdrawals (ludex.chain, docs/contracts.md)
    chain_ws_url: str | None = None
    chain_contract: str | None = Field(default=None, pattern=r"^0x[0-9a-fA-F]{40}$")
    chain_confirmations: int = Field(default=3, ge=0, le=1000)
    chain_poll_interval: float = Field(default=1.0, gt=0, le=600)
    chain_ledger_unit: int = Field(default=10**9, ge=1, le=10**18)
    operator_keystore: str | None = None
    operator_password: SecretStr | None = None
    operator_password_file: str | None = None
    settlement_batch_size: int = Field(default=100, ge=1, le=1000)
    settlement_batch_seconds: float = Field(default=2.0, gt=0, le=3600)

    # the chain indexer service (`ludex serve indexer`, docs/indexer.md)
    indexer_rpc_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    indexer_ws_url: str | None = None
    indexer_from_block: int | None = Field(default=None, ge=0)
    indexer_batch_blocks: int = Field(default=100, ge=1, le=100_000)
    indexer_range_blocks: int = Field(default=1000, ge=1, le=10_000_000)
    indexer_confirmations: int = Field(default=3, ge=0, le=1000)
    indexer_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    indexer_poll_interval: float = Field(default=1.0, gt=0, le=600)
    indexer_name: str = Field(
        default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$"
    )
    indexer_analytics: bool = False
    indexer_traces: bool = True
    indexer_mempool: bool = False
    indexer_mempool_drop_after: float = Field(default=600.0, ge=0, le=86_400)
    indexer_events: Annotated[list[str] | None, NoDecode] = None
    indexer_abi_files: Annotated[list[str], NoDecode] = Field(default_factory=list)
    indexer_abi_addresses: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("store_url", "analytics_url", "bus_url", "cache_url", "chain_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        return _check_url(info.field_name, value.strip())

    @field_validator("indexer_rpc_urls", mode="before")
    @classmethod
    def _rpc_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    value = json.loads(text)
                except ValueError:
                    raise ValueError('not a JSON list; use URL,URL or ["URL", ...]') from None
            else:
                value = [part for part in (p.strip() for p in text.split(",")) if part]
        if isinstance(value, list):
            return [_check_url("indexer_rpc_urls", str(u).strip()) for u in value]
        return value

    @field_validator(
        "indexer_events",
        "indexer_abi_files",
        "indexer_abi_addresses",
        "admin_networks",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(",")) if part]
        return value

    @field_validator("indexer_events")
    @classmethod
    def _indexer_events(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            from ludex.errors import ConfigError
            from ludex.indexer.bus_events import check_kinds

            try:
                check_kinds(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes (for example: openssl rand -hex 32)")
        return value

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        import base64
        import binascii

        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64; generate one with `ludex wallet keygen`") from None
        if len(raw) != 32:
            raise ValueError(
                f"decodes to {len(raw)} bytes, expected 32; generate one with `ludex wallet keygen`"
            )
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.jwt_secret.get_secret_value() == LOCAL_JWT_SECRET:
                raise ValueError(
                    "jwt_secret: set LUDEX_JWT_SECRET; the default is for local use only"
                )
            if self.chain_url.startswith("anvil"):
                raise ValueError(
                    "chain_url: anvil:// is for local use; set an RPC URL in production"
                )
            if self.secrets_key is None:
                raise ValueError(
                    "secrets_key: set LUDEX_SECRETS_KEY (base64 of 32 random bytes); provider "
                    "secrets are encrypted with it"
                )
        return self

    def backends(self) -> dict[str, str]:
        """Port name -> backend kind (URL scheme), for health reports and logs."""
        return {
            "store": urlsplit(self.store_url).scheme,
            "analytics": urlsplit(self.analytics_url).scheme,
            "bus": urlsplit(self.bus_url).scheme,
            "cache": urlsplit(self.cache_url).scheme,
            "chain": urlsplit(self.chain_url).scheme,
        }


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment; raise ConfigError with one line per bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            var = ENV_PREFIX + loc.upper() if err["loc"] else "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{var}: {msg}")
        raise ConfigError("\n".join(lines)) from None
