"""The price of an SMS part, learnt from what Kavenegar charged for the last SMS."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.sms.cost import part_price
from dispatcher.store.models import Campaign, Delivery, DeliveryStatus
from tests.factories import add_member


def deliveries(engine: Engine, *rows: tuple[str, str, int | None, int | None]) -> None:
    """(channel, status, cost, parts) each, for members of their own."""
    members = [add_member(engine, f"M{i}") for i in range(len(rows))]
    with Session(engine) as session:
        campaign = Campaign(slug="c", name="c", channels="email,sms")
        session.add(campaign)
        session.flush()
        assert campaign.id is not None
        for member, (channel, status, cost, parts) in zip(members, rows, strict=True):
            session.add(
                Delivery(
                    campaign_id=campaign.id,
                    member_id=member.id,
                    channel=channel,
                    status=status,
                    cost=cost,
                    sms_parts=parts,
                )
            )
        session.commit()


def test_no_price_is_known_before_kavenegar_priced_an_sms(engine: Engine) -> None:
    deliveries(engine, ("sms", DeliveryStatus.SENT, None, 2), ("email", DeliveryStatus.SENT, 9, 1))
    assert part_price(engine) is None


def test_the_price_of_a_part_is_the_average_of_the_last_sms_priced(engine: Engine) -> None:
    deliveries(
        engine,
        ("sms", DeliveryStatus.SENT, 900, 1),  # older than the last two: left out
        ("sms", DeliveryStatus.SENT, 3000, 2),
        ("sms", DeliveryStatus.FAILED, 5000, 1),  # not sent: not billed
        ("sms", DeliveryStatus.SENT, 1400, 1),
    )
    price = part_price(engine, recent=2)
    assert price is not None
    assert (price.rials_per_part, price.parts) == (1466.6666666666667, 3)
    assert price.estimate(10) == 14667
