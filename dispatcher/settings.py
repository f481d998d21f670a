"""The settings object: read once from the environment (and `.env`) at start-up.

Everything that needs a setting receives it from here; nothing else reads
`os.environ`. Secrets are `SecretStr`, so they never show in a repr or a log line.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.errors import ConfigurationError

DEV_SECRET_FILE = Path(".dispatcher-secret")


class Settings(BaseSettings):
    """All of the dispatcher's settings, by environment variable name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///dispatcher.db"
    redis_url: str | None = None

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

    worker_threads: int = Field(default=8, ge=1)  # inline mode

    @field_validator("redis_url", "smtp_host", "mail_from", "smtp_username", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

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
