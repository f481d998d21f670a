"""Settings: read once, bad values named by their variable, secrets never in a repr."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from dispatcher.errors import ConfigurationError
from dispatcher.queue.broker import build_broker
from dispatcher.settings import create_private_file, load_settings


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


# The files of one folder a test watches, and their modes at every audited file
# operation of this process (`sys.addaudithook` cannot be undone: it is added once).
_watched: dict[str, Any] = {"folder": None, "seen": set(), "busy": False}


def _note_modes(event: str, args: tuple[Any, ...]) -> None:
    folder = _watched["folder"]
    if folder is None or _watched["busy"] or not event.startswith(("open", "os.")):
        return
    _watched["busy"] = True
    try:
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                _watched["seen"].add((entry.name, entry.stat().st_mode & 0o777))
    finally:
        _watched["busy"] = False


sys.addaudithook(_note_modes)


def test_the_inline_secret_file_is_never_readable_by_others_even_for_a_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o022)
    _watched.update(folder=str(tmp_path), seen=set())
    try:
        keys = load_settings(_env_file=None, unsubscribe_secret=None).unsubscribe_keys()
    finally:
        _watched["folder"] = None
        os.umask(previous)
    secret = tmp_path / ".dispatcher-secret"
    assert keys == [secret.read_bytes().strip()] and len(keys[0]) >= 32
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert _watched["seen"] and {mode for _, mode in _watched["seen"]} == {0o600}
    assert [p.name for p in tmp_path.iterdir()] == [".dispatcher-secret"]  # no leftover
    # Read back, never rewritten, by the next command.
    assert load_settings(_env_file=None).unsubscribe_keys() == keys


def test_a_private_file_is_created_once_and_never_replaced(tmp_path: Path) -> None:
    assert create_private_file(tmp_path / "s", b"first") is True
    assert create_private_file(tmp_path / "s", b"second") is False
    assert (tmp_path / "s").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


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


@pytest.mark.parametrize(
    ("values", "broker", "label"),
    [
        ({}, "inline", "in-process (inline)"),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "redis", "redis (redis://127.0.0.1:6379/0)"),
        (
            {"broker_url": "redis://:hunter2@10.0.0.5:6379/1"},
            "redis",
            "redis (redis://:****@10.0.0.5:6379/1)",
        ),
        (
            {"broker_url": "amqp://shop:hunter2@mq.internal:5672/dispatch"},
            "rabbitmq",
            "rabbitmq (amqp://shop:****@mq.internal:5672/dispatch)",
        ),
        (  # BROKER_URL wins; REDIS_URL stays for the shared counters
            {"broker_url": "amqps://shop:hunter2@mq/v", "redis_url": "redis://r:6379/0"},
            "rabbitmq",
            "rabbitmq (amqps://shop:****@mq/v)",
        ),
    ],
)
def test_the_broker_is_chosen_by_broker_url_or_redis_url_and_named_without_its_password(
    values: dict[str, str], broker: str, label: str
) -> None:
    settings = load_settings(_env_file=None, **values)
    assert settings.broker == broker
    assert settings.broker_label == label
    assert "hunter2" not in settings.broker_label and "hunter2" not in repr(settings)
    assert settings.inline == (broker == "inline")


def test_a_redis_broker_url_is_also_the_redis_of_the_shared_counters() -> None:
    settings = load_settings(_env_file=None, broker_url="redis://127.0.0.1:6379/3")
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert load_settings(_env_file=None, broker_url="amqp://mq/v").redis_url is None


def test_a_broker_url_of_another_kind_is_refused_naming_the_variable_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match="BROKER_URL") as caught:
        load_settings(_env_file=None, broker_url="kafka://u:hunter2@k:9092")
    assert "hunter2" not in str(caught.value)


def test_the_broker_is_named_at_start_up_with_its_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(_env_file=None, broker_url="amqp://shop:hunter2@127.0.0.1:1/v")
    with caplog.at_level(logging.INFO, logger="dispatcher.broker"):
        build_broker(settings)  # RabbitMQ connects lazily: no server needed to build it
    assert "broker: rabbitmq (amqp://shop:****@127.0.0.1:1/v)" in caplog.text
    assert "hunter2" not in caplog.text
