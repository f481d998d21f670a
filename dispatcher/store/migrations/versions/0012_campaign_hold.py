"""Holds per (campaign, channel): the campaign's SMS-only hold columns become rows of
`campaign_hold`.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07

`campaign.sms_paused_reason` and `campaign.sms_waiting_until` move to
`campaign_hold (campaign_id, channel, reason, waiting_until)`, one row per campaign
whose SMS were held, and the two columns are dropped. On SQLite the columns are
dropped in place (`ALTER TABLE ... DROP COLUMN`, SQLite 3.35), not by a copy of the
table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign_hold",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("waiting_until", TIME, nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "channel"),
    )
    op.execute(
        "INSERT INTO campaign_hold (campaign_id, channel, reason, waiting_until)"
        " SELECT id, 'sms', sms_paused_reason, sms_waiting_until FROM campaign"
        " WHERE sms_paused_reason IS NOT NULL OR sms_waiting_until IS NOT NULL"
    )
    with op.batch_alter_table("campaign", recreate="never") as batch:
        batch.drop_column("sms_waiting_until")
        batch.drop_column("sms_paused_reason")


def downgrade() -> None:
    with op.batch_alter_table("campaign", recreate="never") as batch:
        batch.add_column(sa.Column("sms_paused_reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("sms_waiting_until", TIME, nullable=True))
    op.execute(
        "UPDATE campaign SET"
        " sms_paused_reason = (SELECT reason FROM campaign_hold h"
        "  WHERE h.campaign_id = campaign.id AND h.channel = 'sms'),"
        " sms_waiting_until = (SELECT waiting_until FROM campaign_hold h"
        "  WHERE h.campaign_id = campaign.id AND h.channel = 'sms')"
    )
    op.drop_table("campaign_hold")
