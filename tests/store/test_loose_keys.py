"""`delivery.campaign_id` and `delivery.member_id` are loose keys (no FOREIGN KEY since
migration 0013, for the speed of expansion): the code that deletes members and campaigns
keeps them true. On SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from dispatcher.audience.addresses import AddressKeys
from dispatcher.definition.campaign import CampaignSpec, EmailSpec, SmsSpec
from dispatcher.delivery.control import cancel
from dispatcher.delivery.privacy import erase_member
from dispatcher.queue.expansion import expand
from dispatcher.store.models import Channel
from tests.factories import add_member

KEYS = AddressKeys(b"test-suppression-key")


def spec(slug: str) -> CampaignSpec:
    return CampaignSpec(
        slug=slug,
        name="حراج",
        channels=[Channel.EMAIL, Channel.SMS],
        email=EmailSpec(subject="سلام", html="<p>سلام</p>"),
        sms=SmsSpec(text="سلام"),
    )


def dangling(engine: Engine) -> tuple[int, int]:
    """Deliveries naming a member, and a campaign, that is not there."""
    with engine.connect() as conn:
        members = conn.execute(
            text(
                "SELECT count(*) FROM delivery d WHERE d.member_id IS NOT NULL"
                " AND NOT EXISTS (SELECT 1 FROM member m WHERE m.id = d.member_id)"
            )
        ).scalar_one()
        campaigns = conn.execute(
            text(
                "SELECT count(*) FROM delivery d"
                " WHERE NOT EXISTS (SELECT 1 FROM campaign c WHERE c.id = d.campaign_id)"
            )
        ).scalar_one()
    return int(members), int(campaigns)


def test_erasure_and_reuse_slug_leave_no_delivery_naming_what_is_gone(engine: Engine) -> None:
    for n, external_id in enumerate(("A", "B", "C")):
        add_member(engine, external_id, mobile=f"+98912123456{n}")
    first = expand(engine, spec("first"), keys=KEYS)
    assert first.eligible == {"email": 3, "sms": 3}
    second = expand(engine, spec("second"), keys=KEYS)
    assert second.campaign.id is not None

    erase_member(engine, "B")  # a member with deliveries in two campaigns
    cancel(engine, second.campaign.id, reason="wrong price")
    again = expand(engine, spec("second"), reuse_slug=True, keys=KEYS)  # deletes the campaign

    assert again.created
    assert dangling(engine) == (0, 0)
    with engine.connect() as conn:
        anonymous = conn.execute(
            text("SELECT count(*) FROM delivery WHERE member_id IS NULL")
        ).scalar_one()
    assert anonymous == 2  # B's two deliveries of the first campaign stay, anonymous
