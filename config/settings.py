"""The settings object and its loader.

Precedence, highest first: command-line flags, ``PIVOTAL_*`` environment variables (nested with ``__``:
``PIVOTAL_DATABASE__POOL_MAX=20``), the TOML file given with ``--config``, defaults.
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
import pydantic_settings
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming the setting and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Seconds in-flight requests get to finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = Field(10.0, gt=0, le=600)
    #: Largest accepted request body, in bytes (CSV uploads have their own limit later).
    max_body_bytes: int = Field(1_048_576, ge=1024)
    #: Trust X-Forwarded-For for the client address (only behind a reverse proxy you control).
    trust_forwarded_for: bool = False


class DatabaseSettings(_Section):
    #: PostgreSQL URL. Unset: an embedded PostgreSQL is started in ``<data_dir>/pg``.
    url: SecretStr | None = None
    pool_min: int = Field(2, ge=0, le=1000)
    pool_max: int = Field(10, ge=1, le=1000)
    #: Seconds to wait for a connection from the pool before a request fails.
    acquire_timeout_s: float = Field(5.0, gt=0)
    #: Per-statement timeout applied to every pooled connection, in milliseconds (0 = none).
    statement_timeout_ms: int = Field(30_000, ge=0)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError(f"pool_min ({self.pool_min}) is larger than pool_max ({self.pool_max})")
        return self


class AuthSettings(_Section):
    #: HS256 signing secret. Unset: one is generated on first start and kept in ``<data_dir>/jwt_secret``.
    jwt_secret: SecretStr | None = None
    token_ttl_s: int = Field(8 * 3600, ge=60, le=30 * 24 * 3600)
    #: Failed logins allowed per account within ``login_window_s`` before 429.
    login_max_failures_per_account: int = Field(5, ge=1)
    #: Failed logins allowed per client address within ``login_window_s`` before 429.
    login_max_failures_per_address: int = Field(20, ge=1)
    login_window_s: float = Field(900.0, gt=0)
    #: bcrypt cost factor (2^rounds iterations); 12 is the usual floor for production.
    bcrypt_rounds: int = Field(12, ge=4, le=16)
    #: E-mail of the admin created on first start when no user exists.
    bootstrap_admin_email: str = "admin@pivotal.local"

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value


class AudienceSettings(_Section):
    #: Country assumed for phone numbers written without a country code (ISO 3166 alpha-2), unless the
    #: contact's or account's country says otherwise.
    default_phone_region: str = Field("US", pattern=r"^[A-Z]{2}$")
    #: Largest CSV file accepted by the import API, in bytes (uploads are streamed to <data_dir>/imports).
    max_import_bytes: int = Field(2 * 1024**3, ge=1024)


class OrdersSettings(_Section):
    #: Seconds between runs that give published leads to the orders they fit; 0: only when asked
    #: (POST /api/orders/allocate).
    allocation_interval_s: float = Field(10.0, ge=0, le=3600)
    #: Push leads to clients' webhooks (the orders that have one); false: they only pull and export.
    push_webhooks: bool = True
    #: Seconds before the first retry of a failed push; each further one waits twice as long (at most an hour).
    push_retry_base_s: float = Field(30.0, ge=0.01, le=3600)
    #: Accept webhook URLs on this network (loopback, private addresses) and plain http: for tests and
    #: on-premises clients only; otherwise a client could make the daemon call inside its own network.
    webhook_allow_private: bool = False


class TelephonySettings(_Section):
    #: Run against the simulated carrier started in-process (no real calls; its key and URL are used, and a
    #: "Sandbox" connection is created if there is none). Set false to use Telnyx.
    sandbox: bool = True
    #: Base64 of the carrier's raw 32-byte Ed25519 webhook public key (Telnyx: Mission Control, Keys &
    #: Credentials). Unset: POST /webhooks/telnyx answers 503.
    webhook_public_key: str | None = Field(None, min_length=44, max_length=44)
    #: Largest webhook body accepted, in bytes (Telnyx events are a few KB).
    max_webhook_bytes: int = Field(65_536, ge=1024, le=10 * 1024 * 1024)
    #: Base64 of 32 random bytes that encrypt carrier API keys and SIP secrets in the database. Unset: generated
    #: once into <data_dir>/secrets_key. Several nodes must share one key: set it explicitly there.
    secrets_key: SecretStr | None = None
    #: Telnyx API base URL, with its /v2 (the simulated carrier: http://127.0.0.1:PORT/v2).
    api_base_url: str = Field("https://api.telnyx.com/v2", pattern=r"^https?://")
    #: Sandbox only: the simulated carrier's clock multiplier (10: rings, greetings and talk 10x shorter) and
    #: its concurrent-call limit.
    sandbox_speed: float = Field(1.0, ge=0.1, le=1000)
    sandbox_channel_limit: int = Field(2000, ge=1, le=100_000)
    #: Sandbox only: the simulated carrier's port (0: any free port; the softphone endpoint names it).
    sandbox_port: int = Field(0, ge=0, le=65535)
    #: Where agents' browsers load the @telnyx/webrtc SDK (its self-contained UMD bundle) when not in sandbox
    #: mode; serve a vendored copy from your own host to pin it. The console's Content-Security-Policy allows
    #: this origin for scripts and wss://rtc.telnyx.com for the softphone.
    webrtc_sdk_url: str = Field("https://unpkg.com/@telnyx/webrtc@2.27.10/lib/bundle.js", pattern=r"^https?://")

    @field_validator("secrets_key")
    @classmethod
    def _secrets_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                raw = base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("not Base64") from None
            if len(raw) != 32:
                raise ValueError("must be Base64 of 32 random bytes")
        return value

    @field_validator("webhook_public_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("not Base64") from None
            if len(raw) != 32:
                raise ValueError("must be Base64 of 32 raw bytes")
        return value


class EmailSettings(_Section):
    #: Capture every message in memory (listed by GET /api/email/captures) instead of handing it to the
    #: sender profile's provider. Set false to send.
    sandbox: bool = True
    #: Base URL of unsubscribe, open and click links when a campaign has no tracking domain, e.g.
    #: https://links.example.com (a name that reaches this daemon). Unset: http://<server.host>:<port>.
    links_base_url: str | None = Field(None, pattern=r"^https?://[^/\s]+$")
    #: After a crash, messages that were in flight may or may not have reached the provider: "resend" them
    #: (nobody misses the mail; a few may get it twice) or "skip" them (nobody gets it twice; a few miss it).
    ambiguous_policy: Literal["resend", "skip"] = "resend"
    #: Pause a campaign after this many provider errors (or unrenderable messages) in a row.
    max_consecutive_errors: int = Field(20, ge=1, le=100_000)
    #: SendGrid's signed Event Webhook: the verification key (base64 DER) from SendGrid's mail settings. Unset:
    #: POST /webhooks/email/sendgrid answers 503.
    sendgrid_webhook_public_key: str | None = Field(None, min_length=40, max_length=400)
    #: Mailgun's HTTP webhook signing key. Unset: POST /webhooks/email/mailgun answers 503.
    mailgun_webhook_signing_key: str | None = Field(None, min_length=8, max_length=200)
    #: SES through SNS: the topics we subscribed. Unset: POST /webhooks/email/ses answers 503 (any AWS account
    #: can sign an SNS message; only our own topics are evidence).
    sns_topic_arns: list[str] = Field(default_factory=list, max_length=50)
    #: Where SNS signing certificates may come from (the default: Amazon's SNS hosts over https).
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$"
    #: Soft bounces within 30 days that suppress an address (a hard bounce or a complaint does at once).
    soft_bounce_limit: int = Field(3, ge=1, le=100)


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: readable lines on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("pivotal", appauthor=False))


class Settings(BaseSettings):
    """Everything the daemon can be told. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PIVOTAL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    #: Where the embedded database, the generated JWT secret and other local state live.
    data_dir: Path = Field(default_factory=default_data_dir)
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    audience: AudienceSettings = AudienceSettings()
    orders: OrdersSettings = OrdersSettings()
    telephony: TelephonySettings = TelephonySettings()
    email: EmailSettings = EmailSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats the TOML file; no .env or secrets-dir magic.
        sources: list[PydanticBaseSettingsSource] = [init_settings, _DatabaseUrlShortcut(settings_cls), env_settings]
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


class _DatabaseUrlShortcut(PydanticBaseSettingsSource):
    """``PIVOTAL_DATABASE_URL``: the short form of ``PIVOTAL_DATABASE__URL`` every deployment sets."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        url = os.environ.get("PIVOTAL_DATABASE_URL")
        return {"database": {"url": url}} if url else {}


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    elif first["type"] == "missing":
        message = "is required"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"invalid setting {where}: {message}{suffix}"


def _reject_unknown_environment(environ: Mapping[str, str]) -> None:
    """A mistyped ``PIVOTAL_`` variable would otherwise be ignored without a word."""
    for name in environ:
        if not name.startswith("PIVOTAL_") or name.startswith("PIVOTAL_TEST_") or name == "PIVOTAL_DATABASE_URL":
            continue
        section, _, field = name.removeprefix("PIVOTAL_").lower().partition("__")
        info = Settings.model_fields.get(section)
        known = info is not None and (
            not field
            or (
                isinstance(info.annotation, type)
                and issubclass(info.annotation, BaseModel)
                and field in info.annotation.model_fields
            )
        )
        if not known:
            raise SettingsError(f"invalid setting {name}: unknown setting")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings; raise :class:`SettingsError` with a one-line message on any problem.

    ``overrides`` are section dicts or top-level values from the command line (``server={"port": 9000}``).
    """
    _reject_unknown_environment(os.environ)
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file}: no such file")

        class _FromFile(Settings):
            model_config = SettingsConfigDict(toml_file=config_file)

        settings_cls = _FromFile
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file}: {exc}") from None
    except pydantic_settings.SettingsError as exc:
        # e.g. PIVOTAL_SERVER=notjson: a whole section given as a value that is not JSON.
        raise SettingsError(f"invalid setting: {exc}") from None
