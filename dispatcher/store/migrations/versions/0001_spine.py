"""The first schema: members, tags, consent events, campaigns, deliveries.

Revision ID: 0001
Revises:
Create Date: 2025-11-01

Exactly the tables the first version created with `metadata.create_all`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("channels", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_campaign_slug"), "campaign", ["slug"], unique=True)
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(), nullable=False),
        sa.Column("last_name", sa.String(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("mobile", sa.String(length=20), nullable=True),
        sa.Column("email_opt_in", sa.Boolean(), nullable=False),
        sa.Column("sms_opt_in", sa.Boolean(), nullable=False),
        sa.Column("email_optout_source", sa.String(), nullable=True),
        sa.Column("sms_optout_source", sa.String(), nullable=True),
        sa.Column("mobile_invalid", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.String(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_member_external_id"), "member", ["external_id"], unique=True)
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("opted_in", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_consent_event_at"), "consent_event", ["at"], unique=False)
    op.create_index(
        op.f("ix_consent_event_member_id"), "consent_event", ["member_id"], unique=False
    )
    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("provider_id", sa.String(length=255), nullable=True),
        sa.Column("cost", sa.Integer(), nullable=True),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "member_id", "channel", name="uq_delivery"),
    )
    op.create_index("ix_delivery_campaign_status", "delivery", ["campaign_id", "channel", "status"])
    op.create_index(op.f("ix_delivery_member_id"), "delivery", ["member_id"], unique=False)
    op.create_table(
        "member_tag",
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"]),
        sa.PrimaryKeyConstraint("member_id", "tag"),
    )
    op.create_index(op.f("ix_member_tag_tag"), "member_tag", ["tag"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_member_tag_tag"), table_name="member_tag")
    op.drop_table("member_tag")
    op.drop_index(op.f("ix_delivery_member_id"), table_name="delivery")
    op.drop_index("ix_delivery_campaign_status", table_name="delivery")
    op.drop_table("delivery")
    op.drop_index(op.f("ix_consent_event_member_id"), table_name="consent_event")
    op.drop_index(op.f("ix_consent_event_at"), table_name="consent_event")
    op.drop_table("consent_event")
    op.drop_index(op.f("ix_member_external_id"), table_name="member")
    op.drop_table("member")
    op.drop_index(op.f("ix_campaign_slug"), table_name="campaign")
    op.drop_table("campaign")
