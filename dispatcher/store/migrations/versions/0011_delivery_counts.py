"""Delivery counts: how many of a campaign's deliveries of a channel are in each status.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

One new table, filled from the deliveries already there (one grouped count, in the
migration's transaction); from then on every status move keeps it. Run it with the
workers stopped, as every migration: a move made during the count would be missed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_count",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "channel", "status"),
    )
    op.execute(
        "INSERT INTO delivery_count (campaign_id, channel, status, n) "
        "SELECT campaign_id, channel, status, COUNT(*) FROM delivery "
        "GROUP BY campaign_id, channel, status"
    )


def downgrade() -> None:
    op.drop_table("delivery_count")
