"""The schema's version: Alembic migrations (`dispatcher/store/migrations/`), run in place.

`dispatcher db upgrade` brings any database to the newest revision: an empty one,
one at an older revision, and one created by the first version of the dispatcher
(`metadata.create_all`, no `alembic_version` table), which is recorded as revision
0001 before upgrading (or as the newest, if its tables already match the models).

Every other command checks the version first (`ensure_current`): the embedded demo
(inline mode on SQLite) upgrades by itself, so `make demo` needs no extra step;
anywhere else a database behind the code stops the command with the instruction to
run `dispatcher db upgrade` (a production schema changes when an operator says so,
not as a side effect of the first worker that starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel

from dispatcher.errors import SchemaError
from dispatcher.store import models  # noqa: F401  (registers the tables)

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST = "0001"
# The newest revision in `migrations/versions/` (a test checks it against Alembic's own
# reading): every command checks it without importing Alembic, a tenth of a second of
# each command's start; Alembic is loaded only to change or compare the schema.
HEAD = "0013"


def config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision the code knows."""
    return HEAD


def scripts_head() -> str:
    """The newest revision as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision; None for a database without one (empty or pre-Alembic)."""
    if "alembic_version" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:  # pragma: no cover - dropped between the two reads
            return None


def _pre_alembic(engine: Engine) -> bool:
    """Tables created without Alembic (`metadata.create_all`)."""
    tables = set(inspect(engine).get_table_names())
    return "campaign" in tables and "alembic_version" not in tables


def differences(connection: Connection) -> list[object]:
    """What the database lacks or has in excess compared with the models ([]: same)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to `revision`; returns (revision before, revision after)."""
    from alembic import command

    before = current(engine)
    with engine.begin() as conn:
        if before is None and _pre_alembic(engine):
            # The first version's tables, or tables created from today's models.
            before = head() if not differences(conn) else FIRST
            command.stamp(config(conn), before)
        command.upgrade(config(conn), revision)
    return before, current(engine) or ""


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded mode) or refuse to run on a database behind the code."""
    at = current(engine)
    if at == head():
        return
    if at is None and _pre_alembic(engine):
        with engine.connect() as conn:
            if not differences(conn):
                return  # created from today's models (create_all): nothing is behind
    if auto_upgrade:
        upgrade(engine)
        return
    where = f"at revision {at}" if at else "not initialised"
    raise SchemaError(
        f"the database schema is {where}, this version needs {head()}: "
        "run `dispatcher db upgrade` (once, before starting the workers)"
    )
