"""Consent by address: address keys on members, the suppression list, bounces.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01

Members gain `email_key` and `mobile_key` (HMAC of the normalised address, nullable:
filled by the next import or expansion, which hold `SUPPRESSION_KEY`); two new tables
hold suppressed addresses and the bounces and complaints that led there. Rows already
there stay as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.add_column(sa.Column("email_key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("mobile_key", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_member_email_key"), ["email_key"], unique=False)
        batch.create_index(batch.f("ix_member_mobile_key"), ["mobile_key"], unique=False)
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address_key", "channel", name="uq_suppression"),
    )
    op.create_table(
        "bounce",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("report_id", sa.String(length=80), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id"),
    )
    op.create_index("ix_bounce_address_key", "bounce", ["address_key"])
    op.create_index("ix_bounce_campaign_id", "bounce", ["campaign_id"])
    op.create_index("ix_bounce_at", "bounce", ["at"])


def downgrade() -> None:
    op.drop_table("bounce")
    op.drop_table("suppression")
    with op.batch_alter_table("member") as batch:
        batch.drop_index(batch.f("ix_member_mobile_key"))
        batch.drop_index(batch.f("ix_member_email_key"))
        batch.drop_column("mobile_key")
        batch.drop_column("email_key")
