"""The marketer's report: when each delivery was sent, its SMS parts, and which
campaign an opt-out came from.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01

Only nullable columns and an index are added: a running database upgrades in place.
Deliveries sent before have no `sent_at` (the report falls back to `updated_at`) and
opt-outs recorded before have no campaign.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sms_parts", sa.Integer(), nullable=True))
    with op.batch_alter_table("consent_event") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_consent_event_campaign_id"), ["campaign_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consent_event") as batch:
        batch.drop_index(batch.f("ix_consent_event_campaign_id"))
        batch.drop_column("campaign_id")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("sms_parts")
        batch.drop_column("sent_at")
