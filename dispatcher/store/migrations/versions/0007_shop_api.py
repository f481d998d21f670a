"""The shop's private API: its keys; an erased member's deliveries and consent events stay,
anonymous; member ids are never reused.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-01

`api_key` holds the SHA-256 of each key, never the key. `delivery.member_id` and
`consent_event.member_id` become nullable: erasing a member (`DELETE
/api/v1/members/{id}`, `dispatcher members erase`) keeps them as anonymous rows, so
campaign counts and the consent feed's positions stay right. On SQLite `member` gets
AUTOINCREMENT (an erased member's id, named by old unsubscribe links, must not go to
the next member; PostgreSQL's sequence never reuses one). No row changes. On SQLite
the tables are copied (batch mode): a few seconds per million deliveries, in the
upgrade's one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
ANONYMOUS = ("delivery", "consent_event")


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_api_key_name"), "api_key", ["name"], unique=True)
    op.create_index(op.f("ix_api_key_key_hash"), "api_key", ["key_hash"], unique=True)
    for table in ANONYMOUS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("member_id", existing_type=sa.Integer(), nullable=True)
    if op.get_bind().dialect.name == "sqlite":
        _member_autoincrement()


def _member_autoincrement() -> None:
    """Recreate SQLite's `member` as it is (reflected: columns other revisions added are
    kept) with AUTOINCREMENT. Its rows are put back into the new table, whose inserts
    settle the references the drop broke (the checks are deferred to the commit)."""
    bind = op.get_bind()
    member = sa.Table("member", sa.MetaData(), autoload_with=bind)
    member.dialect_options["sqlite"]["autoincrement"] = True
    columns = ", ".join(f'"{column.name}"' for column in member.columns)
    op.execute("PRAGMA defer_foreign_keys = ON")
    op.execute("CREATE TEMP TABLE _member_copy AS SELECT * FROM member")
    op.execute("DROP TABLE member")
    member.create(bind)
    op.execute(f"INSERT INTO member ({columns}) SELECT {columns} FROM _member_copy")
    op.execute("DROP TABLE _member_copy")


def downgrade() -> None:
    # Anonymous rows (of erased members) cannot point at anyone again: they go.
    for table in ANONYMOUS:
        op.execute(f"DELETE FROM {table} WHERE member_id IS NULL")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("member_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index(op.f("ix_api_key_key_hash"), table_name="api_key")
    op.drop_index(op.f("ix_api_key_name"), table_name="api_key")
    op.drop_table("api_key")
