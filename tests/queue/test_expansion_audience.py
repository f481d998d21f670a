"""Expansion's audience: any of `tags`, `all_tags`, `exclude_tags`, `exclude_campaigns`;
`--reuse-slug`; the send time recorded for templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.definition.campaign import CampaignSpec, EmailSpec, SmsSpec
from dispatcher.delivery.control import cancel, find, reschedule
from dispatcher.errors import InputError
from dispatcher.queue.expansion import expand
from dispatcher.store.models import Channel, Delivery, DeliveryStatus, Member
from tests.factories import add_member

KEYS = AddressKeys(b"test-suppression-key")  # = the test settings' SUPPRESSION_KEY


def spec(slug: str, **audience: Any) -> CampaignSpec:
    return CampaignSpec(
        slug=slug,
        name="حراج",
        channels=[Channel.EMAIL, Channel.SMS],
        email=EmailSpec(subject="سلام", html="<p>سلام</p>"),
        sms=SmsSpec(text="سلام"),
        **{f"audience_{k}": v for k, v in audience.items()},
    )


def recipients(engine: Engine, campaign_id: int | None, channel: str = "email") -> set[str]:
    with Session(engine) as session:
        rows = session.exec(
            select(Member.external_id)
            .join(Delivery, col(Delivery.member_id) == col(Member.id))
            .where(Delivery.campaign_id == campaign_id, Delivery.channel == channel)
        ).all()
    return set(rows)


def chosen(engine: Engine, slug_spec: CampaignSpec) -> set[str]:
    return recipients(engine, expand(engine, slug_spec, keys=KEYS).campaign.id)


@pytest.fixture
def members(engine: Engine) -> Engine:
    add_member(engine, "A", tags=["newsletter", "vip"], mobile="+989121234567")
    add_member(engine, "B", tags=["newsletter"], mobile="+989121234568")
    add_member(engine, "C", tags=["vip", "tehran"], mobile="+989121234569")
    add_member(engine, "D", tags=[], mobile="+989121234570")
    return engine


def test_all_tags_keeps_the_members_with_every_tag(members: Engine) -> None:
    assert chosen(members, spec("s", all_tags=["newsletter", "vip"])) == {"A"}
    assert chosen(members, spec("t", tags=["newsletter", "tehran"], all_tags=["vip"])) == {
        "A",
        "C",
    }


def test_exclude_tags_drops_the_members_with_any_of_them(members: Engine) -> None:
    assert chosen(members, spec("s", exclude_tags=["vip"])) == {"B", "D"}
    assert chosen(members, spec("t", tags=["newsletter"], exclude_tags=["vip", "x"])) == {"B"}


def test_exclude_campaigns_drops_members_sent_that_campaign_on_that_channel(
    members: Engine,
) -> None:
    first = expand(members, spec("first", tags=["newsletter"]), keys=KEYS)
    with members.begin() as conn:  # A got the email only; B got nothing (it failed)
        a_id, b_id = (
            conn.execute(select(Member.id).where(Member.external_id == x)).scalar_one()
            for x in ("A", "B")
        )
        conn.execute(
            update(Delivery)
            .where(col(Delivery.campaign_id) == first.campaign.id, col(Delivery.member_id) == a_id)
            .where(col(Delivery.channel) == "email")
            .values(status=DeliveryStatus.SENT)
        )
        conn.execute(
            update(Delivery)
            .where(col(Delivery.campaign_id) == first.campaign.id, col(Delivery.member_id) == b_id)
            .values(status=DeliveryStatus.FAILED)
        )
    later = expand(members, spec("later", exclude_campaigns=["first"]), keys=KEYS).campaign.id
    assert recipients(members, later, "email") == {"B", "C", "D"}
    assert recipients(members, later, "sms") == {"A", "B", "C", "D"}  # A got no SMS


def test_an_unknown_campaign_to_exclude_is_refused_and_nothing_recorded(members: Engine) -> None:
    with pytest.raises(InputError, match="no campaign 'nope'"):
        expand(members, spec("s", exclude_campaigns=["nope"]), keys=KEYS)
    assert expand(members, spec("s"), keys=KEYS).created  # the slug was not taken


def test_reuse_slug_replaces_a_cancelled_campaign_that_sent_nothing(members: Engine) -> None:
    first = expand(members, spec("s"), keys=KEYS)
    assert first.campaign.id is not None
    cancel(members, first.campaign.id, reason="wrong price")
    again = expand(members, spec("s", tags=["vip"]), reuse_slug=True, keys=KEYS)
    assert again.created and again.eligible["email"] == 2
    with Session(members) as session:
        rows = session.exec(select(Delivery)).all()
    assert {d.campaign_id for d in rows} == {again.campaign.id}  # the old rows are gone
    assert len(rows) == 4  # A and C, by email and SMS


def test_a_cancelled_campaign_that_sent_nothing_is_reported_reusable(members: Engine) -> None:
    first = expand(members, spec("s"), keys=KEYS)
    assert first.campaign.id is not None
    assert not expand(members, spec("s"), keys=KEYS).reusable  # sending: not reusable
    cancel(members, first.campaign.id, reason="wrong price")
    again = expand(members, spec("s"), keys=KEYS)
    assert not again.created and again.reusable
    with Session(members) as session:
        session.execute(update(Delivery).values(attempts=1))  # a worker tried one
        session.commit()
    assert not expand(members, spec("s"), keys=KEYS).reusable


def test_reuse_slug_refuses_a_campaign_that_is_not_cancelled(members: Engine) -> None:
    expand(members, spec("s"), keys=KEYS)
    with pytest.raises(InputError, match="only a cancelled campaign"):
        expand(members, spec("s"), reuse_slug=True, keys=KEYS)


def test_the_send_time_is_frozen_for_templates_and_reschedule_moves_it(members: Engine) -> None:
    at = datetime(2099, 12, 20, 6, 30, tzinfo=UTC)
    scheduled = expand(members, spec("s"), send_at=at, keys=KEYS).campaign
    assert scheduled.id is not None
    assert CampaignSpec.from_json(scheduled.spec).send_time() == at
    later = at + timedelta(days=1)
    assert reschedule(members, scheduled.id, send_at=later)
    moved = find(members, "s")
    assert CampaignSpec.from_json(moved.spec).send_time() == later
    templates = CampaignSpec.from_json(moved.spec).templates({"name": "x"})
    assert templates.render_sms({}) == "سلام"
    now = expand(members, spec("t"), keys=KEYS).campaign  # sent at once: the launch time
    assert abs(CampaignSpec.from_json(now.spec).send_time() - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    assert not reschedule(members, now.id or 0, send_at=later)  # not scheduled: refused
