"""Scheduling and control of campaigns; SMS holds and delivery reports.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01

Only nullable columns and an index are added, so a running database upgrades in
place with its rows as they are (existing campaigns keep their `sending`/`done`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
CAMPAIGN_COLUMNS: list[tuple[str, Any]] = [
    ("sms_paused_reason", sa.String(length=500)),
    ("sms_waiting_until", TIME),
    ("send_at", TIME),
    ("launched_at", TIME),
    ("paused_by", sa.String(length=16)),
    ("pause_reason", sa.String(length=500)),
    ("paused_at", TIME),
    ("cancel_reason", sa.String(length=500)),
    ("cancelled_at", TIME),
]
DELIVERY_COLUMNS: list[tuple[str, Any]] = [
    ("provider_status", sa.Integer()),
]


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        for name, type_ in CAMPAIGN_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_index(batch.f("ix_campaign_send_at"), ["send_at"], unique=False)
    # Campaigns sent before there was a launch time were launched when created.
    op.execute("UPDATE campaign SET launched_at = created_at WHERE launched_at IS NULL")
    with op.batch_alter_table("delivery") as batch:
        for name, type_ in DELIVERY_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        for name, _ in reversed(DELIVERY_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("campaign") as batch:
        batch.drop_index(batch.f("ix_campaign_send_at"))
        for name, _ in reversed(CAMPAIGN_COLUMNS):
            batch.drop_column(name)
