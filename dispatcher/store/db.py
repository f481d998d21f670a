"""Engine and sessions. SQLite by default (WAL, busy timeout), PostgreSQL in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

from dispatcher.store import models  # noqa: F401  (registers the tables)


def make_engine(url: str, *, busy_timeout: float = 30.0, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so workers can share it
    (`busy_timeout`: seconds a statement waits for another process's write lock)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout, "check_same_thread": False}, **kwargs
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


def insert_or_ignore(conn: Connection, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` for this connection's database (add
    `.on_conflict_do_nothing()`). The dialect module is loaded only when used: the
    PostgreSQL one costs 30 ms of start-up that SQLite commands need not pay."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
