"""Settings: read once, bad values named by their variable, secrets never in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.settings import load_settings


def test_no_secret_or_password_shows_in_the_repr() -> None:
    settings = load_settings(
        _env_file=None,
        database_url="postgresql://shop:db-pass-1@db.example/shop",
        redis_url="redis://:redis-pass-2@cache.example:6379/0",
        smtp_password="smtp-pass-3",
        unsubscribe_secret="unsubscribe-secret-4-0123456789",
        kavenegar_api_key="kavenegar-key-5",
        kavenegar_sender="10004346",
    )
    shown = repr(settings) + str(settings)
    for secret in (
        "db-pass-1",
        "redis-pass-2",
        "smtp-pass-3",
        "unsubscribe-secret-4",
        "kavenegar-key-5",
    ):
        assert secret not in shown


def test_a_postgresql_url_uses_psycopg_3() -> None:
    settings = load_settings(_env_file=None, database_url="postgresql://postgres@127.0.0.1/test")
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_a_bad_value_is_refused_naming_its_variable() -> None:
    with pytest.raises(ConfigurationError, match="SMTP_SECURITY"):
        load_settings(_env_file=None, smtp_security="maybe")


def test_outside_inline_mode_the_unsubscribe_secret_is_required() -> None:
    settings = load_settings(_env_file=None, redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigurationError, match="UNSUBSCRIBE_SECRET"):
        settings.unsubscribe_keys()


def test_outside_inline_mode_the_suppression_key_is_required_and_is_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        _env_file=None, redis_url="redis://127.0.0.1:6379/0", unsubscribe_secret="u" * 20
    )
    with pytest.raises(ConfigurationError, match="SUPPRESSION_KEY"):
        settings.suppression_key_bytes()
    monkeypatch.chdir(tmp_path)
    inline = load_settings(_env_file=None, unsubscribe_secret="u" * 20)
    key = inline.suppression_key_bytes()
    assert key != b"u" * 20 and inline.suppression_key_bytes() == key
    assert (tmp_path / ".dispatcher-suppression-key").stat().st_mode & 0o777 == 0o600
    assert "hidden" not in repr(load_settings(_env_file=None, suppression_key="hidden"))
