"""The settings object: read once from the environment (and `.env`) at start-up.

Everything that needs a setting receives it from here; nothing else reads
`os.environ`. Secrets are `SecretStr`, so they never show in a repr or a log line.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.controlchars import find_control
from dispatcher.errors import ConfigurationError

DEV_SECRET_FILE = Path(".dispatcher-secret")
REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps")
BROKER_SCHEMES = REDIS_SCHEMES + AMQP_SCHEMES
DEV_SUPPRESSION_KEY_FILE = Path(".dispatcher-suppression-key")


# -- the SMS send window: `08:00-21:00`, start included, end excluded; an end before the
# start crosses midnight; `00:00-24:00` is always open --

DAY = 24 * 60
_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Open from `start` to `end` (minutes after local midnight; `end` may be 1440)."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    @property
    def always_open(self) -> bool:
        return (self.end - self.start) % DAY == 0

    def contains(self, local: time) -> bool:
        """True when the local wall-clock time `local` is inside the window."""
        if self.always_open:
            return True
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    @property
    def opens_at(self) -> time:
        return time(self.start // 60, self.start % 60)


def parse_window(text: str) -> SendWindow:
    """`"08:00-21:00"` -> SendWindow; raises ValueError with the reason."""
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a window such as 08:00-21:00 (HH:MM-HH:MM)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{text!r}: hours are 00-23 (24:00 only as the end), minutes 00-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"{text!r} is empty; use 00:00-24:00 to send at any hour")
    return SendWindow(start=start, end=end)


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name (`Asia/Tehran`); raises ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known IANA time zone such as Asia/Tehran") from None


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class Settings(BaseSettings):
    """All of the dispatcher's settings, by environment variable name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # URLs may carry passwords: kept out of the repr (and so out of logs and tracebacks)
    database_url: str = Field(default="sqlite:///dispatcher.db", repr=False)
    # The broker: `redis://...` or `amqp://user:pass@host:5672/vhost` (RabbitMQ). Without
    # it, REDIS_URL is the broker; without either, inline mode (an in-process broker).
    broker_url: str | None = Field(default=None, repr=False)
    # Redis: the broker when BROKER_URL is unset, and the shared counters (rate limits,
    # error storm, the scheduler's periodic jobs) whatever the broker; a redis:// BROKER_URL
    # fills it in when it is unset.
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
    # A campaign's `[email] from` must be at one of these domains (comma-separated;
    # empty: any domain).
    allowed_from_domains: str = ""
    unsubscribe_base_url: str = "http://127.0.0.1:8000"
    unsubscribe_secret: SecretStr | None = None
    # HMAC key of address keys (suppression list, one delivery per address). Never
    # rotated: a new key forgets every suppressed address. Not UNSUBSCRIBE_SECRET.
    suppression_key: SecretStr | None = None
    # Bounces: VERP envelope senders, the bounce mailbox and how often to read it.
    bounce_address: str | None = None
    bounce_imap_url: SecretStr | None = None
    bounce_interval: float = Field(default=300.0, gt=0)
    outbox_dir: Path = Path("./outbox")
    # The unsubscribe server on SQLite: how long an opt-out waits for another process's
    # write lock before it is kept in its journal, and how often the journal is applied.
    unsubscribe_busy_timeout: float = Field(default=1.0, gt=0, le=30)
    unsubscribe_retry_interval: float = Field(default=1.0, gt=0, le=60)
    # Link clicks (`/c/{token}`): unique clickers' hashes kept this many days after the
    # campaign finished; clicks this soon after the send count as a scanner's; how
    # often each server process writes its counted clicks.
    click_dedupe_days: int = Field(default=30, ge=1)
    click_scanner_seconds: float = Field(default=10.0, ge=0)
    click_flush_interval: float = Field(default=1.0, gt=0, le=60)
    # Deprecated: opt-out replies now wait in the database (table `sms_inbox_spool`).
    # A file left here by an older version is moved in by the next `sms inbox`.
    sms_inbox_spool: Path | None = Path("./.dispatcher-inbox-spool.jsonl")

    # SMS through Kavenegar; without an API key, SMS go to OUTBOX_DIR/sms/.
    kavenegar_api_key: SecretStr | None = None
    kavenegar_sender: str | None = Field(default=None, validate_default=True)  # line number
    kavenegar_base_url: str = "https://api.kavenegar.com"
    kavenegar_timeout: float = Field(default=10.0, gt=0)
    kavenegar_rate_limit: int = Field(default=50, ge=1)  # calls per second, all workers
    kavenegar_batch: int = Field(default=100, ge=1, le=200)  # messages per call at most
    sms_send_window: str = "08:00-21:00"
    sms_timezone: str = "Asia/Tehran"
    sms_optout_footer: str = "لغو11"
    sms_max_parts: int = Field(default=4, ge=1, le=10)  # SMS parts per message, footer included
    sms_sync_interval: float = Field(default=300.0, gt=0)  # seconds: scheduler's sync, inbox

    worker_threads: int = Field(default=8, ge=1)  # inline mode
    # The marketer's console (`uvicorn dispatcher.console:app`): the price of one SMS part
    # in rials for its cost estimate (unset: parts only); cookies without `Secure` for a
    # console on http://127.0.0.1 (local use only).
    sms_part_rials: int | None = Field(default=None, ge=0)
    console_insecure_cookies: bool = False

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
        "broker_url",
        "redis_url",
        "smtp_host",
        "mail_from",
        "smtp_username",
        "smtp_rate_limit",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in BROKER_SCHEMES:
            raise ValueError(
                "must start with redis://, rediss://, amqp:// or amqps:// "
                f"(not {mask_url(value)!r})"
            )
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_from_broker(cls, value: str | None, info: ValidationInfo) -> str | None:
        broker = info.data.get("broker_url")
        if value is None and broker is not None and urlsplit(broker).scheme in REDIS_SCHEMES:
            return str(broker)
        return value

    @field_validator("mail_from")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        if value is not None and (found := find_control(value)):
            raise ValueError(f"a control character ({found}) cannot go into the From header")
        return value

    @field_validator("bounce_address", mode="before")
    @classmethod
    def _verp_base(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9._\-]+@[A-Za-z0-9.\-]+", value):
            raise ValueError("must be a plain address such as bounces@shop.example (no '+')")
        return value

    @field_validator("bounce_imap_url", mode="before")
    @classmethod
    def _imap_url(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not value.startswith(("imap://", "imaps://")):
            raise ValueError("must start with imaps:// or imap://")
        return value

    @field_validator("kavenegar_api_key", "suppression_key", mode="before")
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
    def broker(self) -> Literal["rabbitmq", "redis", "inline"]:
        """Which broker: BROKER_URL's scheme, else Redis with REDIS_URL, else inline."""
        if self.broker_url is not None and urlsplit(self.broker_url).scheme in AMQP_SCHEMES:
            return "rabbitmq"
        return "inline" if self.redis_url is None else "redis"

    @property
    def redis_broker_url(self) -> str | None:
        """The Redis the broker uses (BROKER_URL if redis://, else REDIS_URL), if Redis."""
        if self.broker != "redis":
            return None
        return self.broker_url or self.redis_url

    @property
    def inline(self) -> bool:
        """True when no broker is configured: actors run in-process on a StubBroker."""
        return self.broker == "inline"

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
    def from_domains(self) -> list[str]:
        """ALLOWED_FROM_DOMAINS as a list of lower-case domains ([]: any)."""
        return [d.strip().lower() for d in self.allowed_from_domains.split(",") if d.strip()]

    @property
    def sms_zone(self) -> ZoneInfo:
        """SMS_TIMEZONE as a zone (validated at start-up)."""
        return ZoneInfo(self.sms_timezone)

    @property
    def broker_label(self) -> str:
        """The broker in use for start-up lines: kind and URL, the password masked."""
        if self.broker == "inline":
            return "in-process (inline)"
        url = self.broker_url if self.broker == "rabbitmq" else self.redis_broker_url
        return f"{self.broker} ({mask_url(url or '')})"

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
            raise ConfigurationError(
                "UNSUBSCRIBE_SECRET is required when a broker (BROKER_URL, REDIS_URL) is set"
            )
        if not DEV_SECRET_FILE.exists():
            create_private_file(DEV_SECRET_FILE, secrets.token_urlsafe(32).encode())
        return [DEV_SECRET_FILE.read_text().strip().encode()]

    def suppression_key_bytes(self) -> bytes:
        """The HMAC key of address keys (SUPPRESSION_KEY).

        Required outside inline mode. In inline mode (the embedded demo) a random key
        is generated once into `.dispatcher-suppression-key` (mode 0600).
        """
        if self.suppression_key is not None:
            return self.suppression_key.get_secret_value().encode()
        if not self.inline:
            raise ConfigurationError(
                "SUPPRESSION_KEY is required when a broker (BROKER_URL, REDIS_URL) is set"
            )
        create_private_file(DEV_SUPPRESSION_KEY_FILE, secrets.token_urlsafe(32).encode())
        return DEV_SUPPRESSION_KEY_FILE.read_text().strip().encode()


def mask_url(url: str) -> str:
    """`url` with its password (if any) replaced by `****`, for logs and start-up lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def create_private_file(path: Path, content: bytes) -> bool:
    """Create `path` holding `content`, readable by this user only from its first
    moment, and whole when it appears; False if it exists already (left as it is).

    The content goes to a temporary file created with mode 0600 beside `path`, which
    is then linked as `path` (a link never replaces a file: of two processes racing
    here, one wins and the other reads the winner's key)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(temporary)


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
