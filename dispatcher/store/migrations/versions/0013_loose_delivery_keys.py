"""Loose keys on `delivery`: its `campaign_id` and `member_id` keep their meaning and
their indexes, but the database no longer checks them row by row.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

Why: expansion writes a campaign's deliveries with one `INSERT ... SELECT`, and
PostgreSQL checks each foreign key with a trigger per row (a look-up of the member and
a `FOR KEY SHARE` lock of the same campaign row, a million times each). Measured at
900,000 deliveries: 14.1 s with the two checks, 6.6 s without. The checks can never
fail there (the members are selected in the same statement, the campaign row is
written in the same transaction), and the code keeps them true everywhere else:
deliveries are only ever written by expansion, a member is only deleted by erasure
(which first sets its deliveries' `member_id` to NULL), and a campaign only by
`--reuse-slug` (which first deletes its deliveries). `tests/store/test_loose_keys.py`
holds the code to it.

On SQLite the foreign keys are unnamed, so the table is copied without them (a batch
operation, with a naming convention that names them for the drop).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KEYS = (("member_id", "member"), ("campaign_id", "campaign"))
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _name(column: str, table: str) -> str:
    return f"fk_delivery_{column}_{table}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("delivery", naming_convention=CONVENTION) as batch:
            for column, table in KEYS:
                batch.drop_constraint(_name(column, table), type_="foreignkey")
        return
    for key in sa.inspect(bind).get_foreign_keys("delivery"):
        if key["name"] and key["referred_table"] in ("member", "campaign"):
            op.drop_constraint(key["name"], "delivery", type_="foreignkey")


def downgrade() -> None:
    # Fails, as it should, if a delivery names a member or campaign that is not there.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("delivery", naming_convention=CONVENTION) as batch:
            for column, table in KEYS:
                batch.create_foreign_key(_name(column, table), table, [column], ["id"])
        return
    for column, table in KEYS:
        op.create_foreign_key(f"delivery_{column}_fkey", "delivery", table, [column], ["id"])
