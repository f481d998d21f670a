"""Shared fixtures: real databases (SQLite and PostgreSQL) and settings.

PostgreSQL tests run in a schema of their own per test session, so that several
runs on one server do not see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from dispatcher.settings import Settings, load_settings
from dispatcher.store.db import create_schema, make_engine
from tests.factories import Harness, harness

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytest_plugins = ["tests.servers.fixtures"]


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield schema
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def _pg_url(schema: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind, with the schema created."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = _pg_url(request.getfixturevalue("pg_schema"))
    engine = make_engine(url)
    SQLModel.metadata.drop_all(engine)
    create_schema(engine)
    engine.dispose()
    yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: outbox under tmp_path, a fixed secret, no .env."""

    def create(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": f"sqlite:///{tmp_path / 'test.db'}",
            "outbox_dir": tmp_path / "outbox",
            "sms_inbox_spool": tmp_path / "inbox-spool.jsonl",
            "unsubscribe_secret": "test-secret-key-0123456789",
            "suppression_key": "test-suppression-key",
            "mail_from": "فروشگاه نمونه <news@shop.example>",
            "unsubscribe_base_url": "https://shop.example",
            "_env_file": None,
        }
        values.update(overrides)
        return load_settings(**values)

    return create


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The real Redis; a missing server fails the test loudly, never skips it."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis is not answering at {REDIS_URL}: {exc}")
    finally:
        client.close()
    yield REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHDB)."""
    import redis

    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retry after milliseconds instead of seconds, for tests that wait for a retry."""
    from dispatcher.workers import actors

    saved = {name: dict(actor.options) for name, actor in actors().items()}
    for actor in actors().values():
        actor.options.update(min_backoff=20, max_backoff=100)
    yield
    for name, actor in actors().items():
        actor.options.clear()
        actor.options.update(saved[name])


@pytest.fixture
def pipeline(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> Iterator[Callable[..., Harness]]:
    """`pipeline(**settings)` -> a Harness on the test's database (SQLite and PostgreSQL)."""
    stack: list[Any] = []

    def create(**overrides: Any) -> Harness:
        overrides.setdefault("database_url", database_url)
        cm = harness(make_settings(**overrides))
        stack.append(cm)
        return cm.__enter__()

    yield create
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
