"""Shared fixtures: real databases (SQLite and PostgreSQL) and settings.

PostgreSQL tests run in a schema of their own per test session, so that several
runs on one server do not see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
# RabbitMQ: the tests add a virtual host of their own (rabbitmqctl, as root) to this one.
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")

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


# What a schema is made of (tables, columns, indexes, constraints, triggers, sequences):
# a test that changed it leaves a schema whose rows cannot simply be deleted.
_PG_SHAPE = """
SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
  SELECT 'c:' || table_name || '.' || column_name || ':' || data_type || ':' || is_nullable
         || ':' || coalesce(column_default, '')
    FROM information_schema.columns WHERE table_schema = current_schema()
  UNION ALL SELECT 'i:' || indexname || ':' || indexdef
    FROM pg_indexes WHERE schemaname = current_schema()
  UNION ALL SELECT 'k:' || conname || ':' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
  UNION ALL SELECT 't:' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
  UNION ALL SELECT 's:' || sequence_name
    FROM information_schema.sequences WHERE sequence_schema = current_schema()
) AS shape(x)
"""


@dataclass
class _PgDatabase:
    """The session's PostgreSQL schema, emptied for each test: its rows deleted and its
    sequences restarted (DDL costs PostgreSQL a file sync per table; a DELETE of a few
    rows does not), rebuilt only if a test changed its shape."""

    schema: str
    url: str
    shape: str | None = None

    def fresh(self) -> str:
        engine = make_engine(self.url)
        try:
            with engine.begin() as conn:
                same = self.shape is not None and conn.scalar(text(_PG_SHAPE)) == self.shape
                if same:
                    for table in reversed(SQLModel.metadata.sorted_tables):
                        conn.execute(table.delete())
                    sequences = conn.scalars(
                        text(
                            "SELECT sequence_name FROM information_schema.sequences"
                            " WHERE sequence_schema = current_schema()"
                        )
                    ).all()
                    for sequence in sequences:
                        conn.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))
                else:  # first use, or a test changed the schema: build it anew
                    conn.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
                    conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            if not same:
                create_schema(engine)
                with engine.connect() as conn:
                    self.shape = conn.scalar(text(_PG_SHAPE))
        finally:
            engine.dispose()
        return self.url


@pytest.fixture(scope="session")
def pg_database(pg_schema: str) -> _PgDatabase:
    return _PgDatabase(pg_schema, _pg_url(pg_schema))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database file with the schema created, once per session: a test's fresh
    database is a copy of it (the same bytes `create_schema` would write)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()  # the last connection checkpoints the WAL into the file
    assert not path.with_name("template.db-wal").exists()
    return path


def _fresh_sqlite(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "test.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind, with the schema created."""
    if request.param == "sqlite":
        return _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    database: _PgDatabase = request.getfixturevalue("pg_database")
    return database.fresh()


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    return _fresh_sqlite(sqlite_template, tmp_path)


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


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test session's own, deleted at the end; a
    missing server or `rabbitmqctl` fails the test loudly, never skips it."""
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    try:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    except (OSError, subprocess.CalledProcessError) as exc:  # pragma: no cover - environment
        pytest.fail(f"could not add a RabbitMQ virtual host with rabbitmqctl: {exc}")
    yield vhost
    rabbitmqctl("delete_vhost", vhost)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def rabbitmq_url(rabbitmq_vhost: str) -> Iterator[str]:
    """The session's virtual host, its dispatcher queues deleted before and after the test."""
    url = f"{RABBITMQ_URL.rstrip('/')}/{rabbitmq_vhost}"
    delete_rabbitmq_queues(url)
    yield url
    delete_rabbitmq_queues(url)


def delete_rabbitmq_queues(url: str, queues: tuple[str, ...] = ("email", "sms")) -> None:
    """Delete `queues` with their delay and dead-letter queues: a RabbitMQ that lost them."""
    import pika
    from dramatiq.common import dq_name, xq_name

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in queues:
            for name in (queue, dq_name(queue), xq_name(queue)):
                channel.queue_delete(name)
    finally:
        connection.close()


@dataclass
class BrokerUnderTest:
    """One broker of the tests (`kind` "redis" or "rabbitmq") and what a test does to it."""

    kind: str
    url: str
    namespace: str | None = None

    @property
    def settings(self) -> dict[str, object]:
        """Settings overrides that select this broker."""
        if self.kind == "redis":
            return {"redis_url": self.url, "redis_namespace": self.namespace}
        return {"broker_url": self.url}

    @property
    def env(self) -> dict[str, str]:
        """The same, as environment variables for a process."""
        return {k.upper(): str(v) for k, v in self.settings.items()}

    def queued(self, queue: str) -> int:
        """Messages waiting in `queue` (ready, not yet taken by a worker)."""
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            try:
                return int(client.llen(f"{self.namespace}:{queue}"))
            finally:
                client.close()
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            declared = connection.channel().queue_declare(queue, passive=True)
            return int(declared.method.message_count)
        finally:
            connection.close()

    def lose_queues(self) -> None:
        """As a broker restarted without persistence: every queued message is gone."""
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            keys = list(client.scan_iter(f"{self.namespace}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
        else:
            delete_rabbitmq_queues(self.url)


@pytest.fixture(params=["redis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def broker_under_test(request: pytest.FixtureRequest) -> BrokerUnderTest:
    """Each real broker in turn: Redis (a key prefix of the test's own) and RabbitMQ
    (the session's virtual host, its queues deleted around the test)."""
    if request.param == "redis":
        return BrokerUnderTest(
            "redis",
            request.getfixturevalue("redis_url"),
            request.getfixturevalue("redis_namespace"),
        )
    return BrokerUnderTest("rabbitmq", request.getfixturevalue("rabbitmq_url"))


@pytest.fixture(autouse=True)
def quick_slow_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery a provider told to slow down goes back on the queue with a delay of
    50 ms instead of 2 s, in this process (worker processes keep the real delay): the
    same path through the delay queue, without a test waiting seconds for it."""
    from dispatcher.workers import actor

    monkeypatch.setattr(actor, "SLOW_DOWN_DELAY_MS", 50)


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
