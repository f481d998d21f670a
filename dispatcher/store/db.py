"""Engine and sessions. SQLite by default (WAL, busy timeout), PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

from dispatcher.store import models  # noqa: F401  (registers the tables)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so workers can share it."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Zero what is deleted or replaced where that costs no extra I/O, so an old
            # address does not linger in a page's free space (erasure uses ON).
            cur.execute("PRAGMA secure_delete=FAST")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def sqlite_checkpoint(engine: Engine) -> None:
    """Copy SQLite's WAL into the database file and empty it (`wal_checkpoint(TRUNCATE)`),
    waiting for readers up to the busy timeout; raises `OperationalError` if one still
    holds an old snapshot (the WAL then keeps its old pages)."""
    with engine.connect() as conn:
        busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        conn.commit()
    if busy:
        raise OperationalError(
            "PRAGMA wal_checkpoint(TRUNCATE)", None, Exception("a reader kept the WAL busy")
        )


def create_schema(engine: Engine) -> None:
    """Create any missing table (idempotent)."""
    SQLModel.metadata.create_all(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
