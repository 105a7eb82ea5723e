"""amiflow settings: one pydantic-settings model.

Sources, strongest first: explicit overrides (CLI flags), the environment (prefix ``AMIFLOW_``), the TOML file given
by ``--config`` (keys are the field names, lower case, e.g. ``database_url = "postgresql://..."``), the defaults.
A wrong setting raises :class:`~amiflow.errors.ConfigError` with one line naming the setting and the expected form.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from amiflow.errors import ConfigError

__all__ = ["Settings", "load_settings"]


def _check_scheme(value: str | None, schemes: tuple[str, ...], what: str) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"expected a {what} URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value


class Settings(BaseSettings):
    """Every setting of amiflow; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="AMIFLOW_", extra="forbid", frozen=True)

    # -- core (CONTRACT.md)
    database_url: str | None = Field(None, description="PostgreSQL/TimescaleDB DSN; unset = embedded PostgreSQL")
    mqtt_url: str | None = Field(None, description="mqtt:// or mqtts://user:pass@host:port; unset = in-process")
    billing_url: str | None = Field(None, description="billing webhook base URL; unset = bills stay in the outbox")
    billing_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for the webhook signature")
    data_dir: Path = Field(Path(".amiflow"), description="embedded database, spool, reports")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # -- storage
    pool_max_size: int = Field(8, ge=1, le=256)
    chunk_interval: str = Field("7 days", description="TimescaleDB chunk / native partition width")
    compress_after: str = Field("7 days", description="TimescaleDB compression policy age")
    partitions_ahead: int = Field(2, ge=1, le=52, description="native partitions created ahead of now")

    # -- MQTT ingest
    mqtt_topic_prefix: str = "ami/v1"
    mqtt_share_group: str = Field(
        "amiflow",
        description="MQTT 5 shared-subscription group of the ingest workers; empty: one worker on a plain"
        " subscription (Mosquitto keeps only plain subscriptions over its own restart)",
    )
    mqtt_client_id: str = Field("amiflow-ingest-1", description="fixed id: the broker keeps the session")
    mqtt_session_expiry_s: int = Field(86400, ge=0)
    mqtt_max_inflight: int = Field(1000, ge=1, le=65535)
    ingest_batch_max_readings: int = Field(50_000, ge=1)
    ingest_batch_max_latency_s: float = Field(1.0, gt=0)
    unknown_meter_policy: Literal["quarantine", "register"] = "quarantine"
    clock_skew_future_s: int = Field(300, ge=0, description="readings further in the future are quarantined")
    reading_horizon_days: int = Field(400, ge=1, description="readings older than this are quarantined")
    plausible_past_days: int = Field(
        3650,
        ge=1,
        le=36500,
        description="payments and balance statements (API, imports) dated further back are refused",
    )
    plausible_future_s: int = Field(
        3600, ge=0, description="payments and balance statements dated further in the future are refused"
    )
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20)
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)

    # -- poller
    poll_interval_s: int = Field(900, ge=1)
    poll_jitter_s: float = Field(30.0, ge=0)
    poll_timeout_s: float = Field(5.0, gt=0)
    poll_retries: int = Field(2, ge=0)
    clock_drift_tolerance_s: float = Field(10.0, ge=0)

    # -- rating and billing
    currency: str = Field("USD", min_length=3, max_length=3)
    billing_block_meters: int = Field(2000, ge=1)

    # -- billing bridge
    bridge_batch_size: int = Field(200, ge=1)
    bridge_retry_base_s: float = Field(1.0, gt=0)
    bridge_retry_max_s: float = Field(3600.0, gt=0)
    api_token: SecretStr | None = Field(None, description="bearer token for the HTTP API (reads and billing writes)")
    api_public_reads: bool = Field(False, description="the HTTP API's read routes answer without credentials")
    api_max_body_bytes: int = Field(1 << 20, ge=1024, description="larger HTTP request bodies are refused (413)")
    api_metrics_auth: bool = Field(False, description="/metrics needs an operator or metrics key (docs/security.md)")
    signature_max_age_s: int = Field(
        300, ge=1, le=86400, description="signed requests with an X-Amiflow-Timestamp further off are refused"
    )
    signature_require_timestamp: bool = Field(
        False, description="the HTTP API refuses body-only signatures (X-Amiflow-Signature without a timestamp)"
    )
    reconnect_within_s: int = Field(3600, ge=0)
    disconnect_ruleset: str = Field("us_tx", description="policy rule set: a bundled id (us_tx, eu_de) or a TOML path")
    command_attempts: int = Field(3, ge=1, le=20, description="relay command tries before escalation")
    command_retry_s: float = Field(5.0, ge=0, description="first retry delay of a relay command (doubles)")
    dlms_password: SecretStr | None = Field(None, description="LLS password of the DLMS management client (relay)")

    # -- e-bills (docs/bills.md)
    smtp_url: SecretStr | None = Field(
        None, description="smtp://, smtp+starttls:// or smtps://[user:pass@]host[:port] for e-bills; unset = queued"
    )
    mail_from: str | None = Field(None, description="the sender of e-bills, e.g. 'Billing <billing@utility.example>'")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        return _check_scheme(v, ("postgresql", "postgres"), "PostgreSQL")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str | None) -> str | None:
        return _check_scheme(v, ("mqtt", "mqtts"), "MQTT")

    @field_validator("billing_url")
    @classmethod
    def _billing_url(cls, v: str | None) -> str | None:
        return _check_scheme(v, ("http", "https"), "HTTP")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def _describe(error: Any, where: str | None = None) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ())) or "settings"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
    name = f"{where}: {loc}" if where else f"AMIFLOW_{loc.upper()}"
    return f"{name}: {msg}{shown}"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and an optional TOML file.

    Raises ConfigError with one line naming the first wrong setting.
    """
    file_values: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
        file_values = {k.lower(): v for k, v in file_values.items()}
    try:
        env_only = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None
    if not file_values:
        return env_only
    # The file is weaker than the environment: only fields the environment/overrides left at default come from it.
    explicit = env_only.model_fields_set
    merged = {**file_values, **{k: getattr(env_only, k) for k in explicit}}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], str(config))) from None
