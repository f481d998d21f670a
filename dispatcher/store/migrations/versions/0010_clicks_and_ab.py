"""Link clicks and A/B subjects: click counts, the unique clickers' hashes, each
delivery's variant and each campaign's A/B decision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Two new tables and nullable columns only: a running database upgrades in place.
`click_count` holds counts per campaign, channel, variant, link and minute, nothing
about who clicked; `click_seen` holds keyed hashes that count a delivery's clicks
once, deleted CLICK_DEDUPE_DAYS after the campaign finished.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
AB_COLUMNS = ("ab_state", "ab_winner", "ab_decided_by", "ab_p_value", "ab_decided_at")


def upgrade() -> None:
    op.create_table(
        "click_count",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("variant", sa.String(length=1), nullable=False),
        sa.Column("link", sa.Integer(), nullable=False),
        sa.Column("minute", TIME, nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("unique_clicks", sa.Integer(), nullable=False),
        sa.Column("scanner", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "channel", "variant", "link", "minute", name="uq_click"),
    )
    op.create_index(op.f("ix_click_count_campaign_id"), "click_count", ["campaign_id"])
    op.create_table(
        "click_seen",
        sa.Column("hash", sa.String(length=32), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index(op.f("ix_click_seen_campaign_id"), "click_seen", ["campaign_id"])
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("variant", sa.String(length=1), nullable=True))
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("ab_state", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("ab_winner", sa.String(length=1), nullable=True))
        batch.add_column(sa.Column("ab_decided_by", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("ab_p_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("ab_decided_at", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        for column in reversed(AB_COLUMNS):
            batch.drop_column(column)
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("variant")
    op.drop_index(op.f("ix_click_seen_campaign_id"), table_name="click_seen")
    op.drop_table("click_seen")
    op.drop_index(op.f("ix_click_count_campaign_id"), table_name="click_count")
    op.drop_table("click_count")
