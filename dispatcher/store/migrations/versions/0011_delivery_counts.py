"""Delivery counts: how many of a campaign's deliveries of a channel are in each status
(and, for the outcomes, in each minute).

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

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "delivery_count",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("first", TIME, nullable=True),
        sa.Column("last", TIME, nullable=True),
        sa.PrimaryKeyConstraint("campaign_id", "channel", "status", "minute"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    moment = "COALESCE(sent_at, updated_at)"
    epoch_minute = (
        f"CAST(FLOOR(EXTRACT(EPOCH FROM {moment}) / 60) AS INTEGER)"
        if postgres
        else f"CAST(strftime('%s', {moment}) AS INTEGER) / 60"
    )
    outcome = "status IN ('sent', 'failed', 'skipped')"
    op.execute(
        "INSERT INTO delivery_count (campaign_id, channel, status, minute, n, first, last) "
        f"SELECT campaign_id, channel, status, CASE WHEN {outcome} THEN {epoch_minute} ELSE 0 END, "
        f"COUNT(*), MIN(CASE WHEN {outcome} THEN {moment} END), "
        f"MAX(CASE WHEN {outcome} THEN {moment} END) FROM delivery "
        f"GROUP BY campaign_id, channel, status, CASE WHEN {outcome} THEN {epoch_minute} ELSE 0 END"
    )


def downgrade() -> None:
    op.drop_table("delivery_count")
