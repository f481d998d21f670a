"""The settings object: read once from the environment (and `.env`) at start-up.

Everything that needs a setting receives it from here; nothing else reads
`os.environ`. Secrets are `SecretStr`, so they never show in a repr or a log line.
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.errors import ConfigurationError
from dispatcher.sms.window import SendWindow, parse_window, parse_zone

DEV_SECRET_FILE = Path(".dispatcher-secret")


class Settings(BaseSettings):
    """All of the dispatcher's settings, by environment variable name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # URLs may carry passwords: kept out of the repr (and so out of logs and tracebacks)
    database_url: str = Field(default="sqlite:///dispatcher.store.db", repr=False)
    redis_url: str | None = Field(default=None, repr=False)
    redis_namespace: str = Field(default="dispatcher", min_length=1, pattern=r"^[\w.-]+$")

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_connections: int = Field(default=4, ge=1, le=64)
    smtp_timeout: float = Field(default=30.0, gt=0)

    mail_from: str | None = None
    unsubscribe_base_url: str = "http://127.0.0.1:8000"
    unsubscribe_secret: SecretStr | None = None
    outbox_dir: Path = Path("./outbox")
    # Opt-out replies fetched from Kavenegar, kept until the database has them.
    sms_inbox_spool: Path = Path("./.dispatcher-inbox-spool.jsonl")

    # SMS through Kavenegar; without an API key, SMS go to OUTBOX_DIR/sms/.
    kavenegar_api_key: SecretStr | None = None
    kavenegar_sender: str | None = Field(default=None, validate_default=True)  # line number
    kavenegar_base_url: str = "https://api.kavenegar.com"
    kavenegar_timeout: float = Field(default=10.0, gt=0)
    kavenegar_rate_limit: int = Field(default=50, ge=1)  # calls per second, all workers
    sms_send_window: str = "08:00-21:00"
    sms_timezone: str = "Asia/Tehran"
    sms_optout_footer: str = "لغو11"
    sms_sync_interval: float = Field(default=300.0, gt=0)  # seconds: scheduler's sync, inbox

    worker_threads: int = Field(default=8, ge=1)  # inline mode

    # The shop's private API (`uvicorn dispatcher.api:app`): requests per second per key,
    # in each API process (bursts of as many).
    api_rate_limit: float = Field(default=20.0, gt=0)

    # Running it for real: see README "Running it for real".
    smtp_rate_limit: float | None = Field(default=None, gt=0)  # messages/s, all workers
    send_lease_seconds: int = Field(default=300, ge=1)  # `sending` older = orphaned
    max_send_errors: int = Field(default=50, ge=0)  # consecutive; 0 = never auto-pause
    scheduler_interval: float = Field(default=5.0, gt=0)  # seconds between ticks
    redis_heartbeat_timeout_ms: int = Field(default=30_000, ge=1_000)
    log_format: Literal["text", "json"] = "text"
    prometheus: bool = False  # Dramatiq's middleware in workers; dispatcher_* in scheduler
    prometheus_port: int = Field(default=9192, ge=1, le=65535)  # the scheduler's metrics

    @field_validator(
        "redis_url", "smtp_host", "mail_from", "smtp_username", "smtp_rate_limit", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kavenegar_api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kavenegar_sender", mode="before")
    @classmethod
    def _sender_with_key(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if value is None and info.data.get("kavenegar_api_key") is not None:
            raise ValueError("required when KAVENEGAR_API_KEY is set (the sender line number)")
        if isinstance(value, str) and not re.fullmatch(r"\+?[0-9]{3,20}", value):
            raise ValueError("must be the sender line number (digits only)")
        return value

    @field_validator("kavenegar_base_url")
    @classmethod
    def _kavenegar_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("sms_send_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        return str(parse_window(value))

    @field_validator("sms_timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        return parse_zone(value.strip()).key

    @field_validator("unsubscribe_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _psycopg3(cls, value: str) -> str:
        # We ship psycopg 3; a plain postgresql:// URL would ask SQLAlchemy for psycopg2.
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.removeprefix("postgres://")
        return value

    @property
    def inline(self) -> bool:
        """True when no Redis is configured: actors run in-process on a StubBroker."""
        return self.redis_url is None

    @property
    def outbox(self) -> bool:
        """True when no SMTP relay is configured: messages are written to OUTBOX_DIR."""
        return self.smtp_host is None

    @property
    def sms_outbox(self) -> bool:
        """True when no Kavenegar API key is configured: SMS are written to OUTBOX_DIR."""
        return self.kavenegar_api_key is None

    @property
    def sms_transport_label(self) -> str:
        if self.sms_outbox:
            return f"outbox ({self.outbox_dir / 'sms'})"
        return f"kavenegar ({self.kavenegar_base_url}, line {self.kavenegar_sender})"

    @property
    def send_window(self) -> SendWindow:
        """SMS_SEND_WINDOW, parsed (validated at start-up)."""
        return parse_window(self.sms_send_window)

    @property
    def sms_zone(self) -> ZoneInfo:
        """SMS_TIMEZONE as a zone (validated at start-up)."""
        return ZoneInfo(self.sms_timezone)

    @property
    def broker_label(self) -> str:
        return "in-process (inline)" if self.inline else "redis"

    @property
    def transport_label(self) -> str:
        if self.outbox:
            return f"outbox ({self.outbox_dir})"
        return f"smtp ({self.smtp_host}:{self.smtp_port}, {self.smtp_security})"

    def unsubscribe_keys(self) -> list[bytes]:
        """The HMAC keys for unsubscribe tokens, newest first (comma-separated setting).

        Outside inline mode the setting is required. In inline mode (the embedded demo)
        a random key is generated once and kept in `.dispatcher-secret`, so links in
        the outbox keep working across runs on this machine.
        """
        raw = self.unsubscribe_secret.get_secret_value() if self.unsubscribe_secret else ""
        keys = [k.strip().encode() for k in raw.split(",") if k.strip()]
        if keys:
            return keys
        if not self.inline:
            raise ConfigurationError("UNSUBSCRIBE_SECRET is required when REDIS_URL is set")
        if not DEV_SECRET_FILE.exists():
            DEV_SECRET_FILE.write_text(secrets.token_urlsafe(32))
            DEV_SECRET_FILE.chmod(0o600)
        return [DEV_SECRET_FILE.read_text().strip().encode()]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value names its variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
