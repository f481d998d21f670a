"""dispatcher/hold.py: a channel's own holds on a campaign, one row per (campaign,
channel), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher import hold
from dispatcher.delivery.listing import list_campaigns
from dispatcher.delivery.status import campaign_status
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus
from tests.factories import add_member

OPENING = datetime(2025, 12, 22, 4, 30, tzinfo=UTC)


def new_campaign(engine: Engine, slug: str = "c", channels: str = "email,sms") -> int:
    with Session(engine) as session:
        campaign = Campaign(slug=slug, name=slug, channels=channels)
        session.add(campaign)
        session.commit()
        assert campaign.id is not None
        return campaign.id


def add_deliveries(engine: Engine, campaign_id: int, channel: str, *statuses: str) -> None:
    with Session(engine) as session:
        for i, status in enumerate(statuses):
            member = add_member(engine, f"{campaign_id}-{channel}-{i}")
            session.add(
                Delivery(
                    campaign_id=campaign_id, member_id=member.id, channel=channel, status=status
                )
            )
        session.commit()


def holds(engine: Engine, campaign_id: int) -> dict[str, hold.Hold]:
    with engine.connect() as conn:
        return hold.holds_of(conn, campaign_id)


def test_a_pause_is_recorded_once_and_a_resume_clears_it(engine: Engine) -> None:
    campaign_id = new_campaign(engine)
    assert holds(engine, campaign_id) == {}
    assert hold.pause(engine, campaign_id, "sms", "no credit (Kavenegar 418)")
    assert not hold.pause(engine, campaign_id, "sms", "a second reason")  # the first stays
    assert holds(engine, campaign_id) == {"sms": hold.Hold("sms", "no credit (Kavenegar 418)")}
    assert hold.resume(engine, campaign_id, "sms")
    assert not hold.resume(engine, campaign_id, "sms")
    assert holds(engine, campaign_id) == {}
    assert hold.pause(engine, campaign_id, "sms", "again")  # the kept row takes it again


def test_a_wait_is_recorded_with_its_opening_and_cleared_once(engine: Engine) -> None:
    campaign_id = new_campaign(engine)
    opening = OPENING.astimezone(ZoneInfo("Asia/Tehran"))  # stored as UTC
    assert hold.wait(engine, campaign_id, "sms", opening)
    assert not hold.wait(engine, campaign_id, "sms", opening)  # recorded already
    assert holds(engine, campaign_id)["sms"].waiting_until == OPENING
    assert hold.waiting(engine, "sms") == [campaign_id]
    assert hold.stop_waiting(engine, campaign_id, "sms")
    assert not hold.stop_waiting(engine, campaign_id, "sms")  # another process came first
    assert hold.waiting(engine, "sms") == []


def test_a_paused_channel_is_not_among_those_waiting_for_the_window(engine: Engine) -> None:
    campaign_id = new_campaign(engine)
    hold.wait(engine, campaign_id, "sms", OPENING)
    hold.pause(engine, campaign_id, "sms", "no credit")
    assert hold.waiting(engine, "sms") == []
    assert hold.resume_all(engine, campaign_id) == ["sms"]
    assert hold.waiting(engine, "sms") == [campaign_id]


def test_a_channel_has_only_the_holds_its_spec_names(engine: Engine) -> None:
    campaign_id = new_campaign(engine)
    with pytest.raises(ValueError, match="email channel has no pause hold"):
        hold.pause(engine, campaign_id, "email", "why")
    with pytest.raises(ValueError, match="email channel has no window hold"):
        hold.wait(engine, campaign_id, "email", OPENING)


def test_held_pending_counts_the_pending_deliveries_of_held_channels_only(
    engine: Engine,
) -> None:
    campaign_id = new_campaign(engine)
    add_deliveries(engine, campaign_id, "sms", "pending", "pending", "sent")
    add_deliveries(engine, campaign_id, "email", "pending")
    assert hold.held_pending(engine, campaign_id) == 0
    hold.wait(engine, campaign_id, "sms", OPENING)
    assert hold.held_pending(engine, campaign_id) == 2
    hold.stop_waiting(engine, campaign_id, "sms")
    assert hold.held_pending(engine, campaign_id) == 0


def test_status_and_the_campaign_list_show_the_hold(engine: Engine) -> None:
    campaign_id = new_campaign(engine, "yalda")
    other = new_campaign(engine, "other", "email")
    add_deliveries(engine, campaign_id, "sms", DeliveryStatus.PENDING)
    status = campaign_status(engine, "yalda")
    assert (status["sms"]["paused"], status["sms"]["waiting_until"]) == (None, None)
    assert "paused" not in status["email"]  # email has no holds of its own

    hold.wait(engine, campaign_id, "sms", OPENING)
    hold.pause(engine, campaign_id, "sms", "the account has no credit left")
    status = campaign_status(engine, "yalda")
    assert status["sms"]["paused"] == "the account has no credit left"
    assert status["sms"]["waiting_until"] == "2025-12-22T04:30:00+00:00"
    notes = {row["slug"]: row["note"] for row in list_campaigns(engine, ZoneInfo("UTC"))}
    assert notes == {"yalda": "SMS paused: the account has no credit left", "other": None}
    assert other != campaign_id


def test_forgetting_a_campaign_deletes_its_holds(engine: Engine) -> None:
    campaign_id = new_campaign(engine)
    hold.pause(engine, campaign_id, "sms", "no credit")
    with Session(engine) as session:
        hold.forget(session, campaign_id)
        session.commit()
    assert holds(engine, campaign_id) == {}
