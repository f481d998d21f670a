"""One state machine: why a delivery failed is a kind (an enum), not a text prefix.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

`delivery.failure_kind` (retries-exhausted, permanent, invalid-recipient, render) is
set with `failed`; `retry-failed` and `sms sync` select on it instead of
`error_message LIKE 'retries exhausted%'`. Existing failed rows are classified from
their message. Adding a nullable column changes no other row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(length=24), nullable=True))
    op.execute(
        "UPDATE delivery SET failure_kind = CASE"
        " WHEN error_message LIKE 'retries exhausted%' THEN 'retries-exhausted'"
        " WHEN error_message LIKE 'render:%' THEN 'render'"
        " ELSE 'permanent' END"
        " WHERE status = 'failed'"
    )


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("failure_kind")
