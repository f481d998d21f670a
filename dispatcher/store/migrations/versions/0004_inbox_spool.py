"""The SMS inbox spool moves into the database.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Opt-out replies fetched from Kavenegar used to wait in a file (`SMS_INBOX_SPOOL`) on
the host of the scheduler that fetched them, and only that host replayed them. Their
senders now wait in `sms_inbox_spool`, which every scheduler sees. A new table only:
nothing else changes. What a file still holds is moved in by the next `sms inbox`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_inbox_spool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("sms_inbox_spool")
