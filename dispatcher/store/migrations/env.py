"""Alembic environment: run by `dispatcher.store.schema`, which passes the connection in.

`render_as_batch` lets the same migrations alter tables on SQLite (copy and move)
and on PostgreSQL (ALTER TABLE).
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from dispatcher.store import models  # noqa: F401  (registers the tables)
from dispatcher.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # the `alembic` command line, with sqlalchemy.url set
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as conn:
            _migrate(conn)
        engine.dispose()
        return
    _migrate(connection)


def _migrate(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
