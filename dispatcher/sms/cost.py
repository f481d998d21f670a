"""What SMS cost: the price of a part as Kavenegar charged it lately (the `cost` it
returns for each SMS, recorded on the delivery with its `sms_parts`), and what an
audience's parts would cost at that price (`campaign validate`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.store.models import Channel, Delivery, DeliveryStatus

RECENT = 1000  # the last SMS priced: the price of a part is their average


@dataclass(frozen=True, slots=True)
class PartPrice:
    """Rials per SMS part, learnt from `parts` parts Kavenegar priced."""

    rials_per_part: float
    parts: int

    def estimate(self, parts: int) -> int:
        """What `parts` SMS parts would cost, in rials."""
        return round(parts * self.rials_per_part)


def part_price(engine: Engine, *, recent: int = RECENT) -> PartPrice | None:
    """The price of a part over the last `recent` SMS Kavenegar priced; None when it
    priced none (the outbox, or nothing sent yet)."""
    priced = (
        select(col(Delivery.cost).label("cost"), col(Delivery.sms_parts).label("parts"))
        .where(
            col(Delivery.channel) == str(Channel.SMS),
            col(Delivery.status) == str(DeliveryStatus.SENT),
            col(Delivery.cost).is_not(None),
            col(Delivery.sms_parts) > 0,
        )
        .order_by(col(Delivery.id).desc())
        .limit(recent)
        .subquery()
    )
    with Session(engine) as session:
        cost, parts = session.execute(
            select(func.sum(priced.c.cost), func.sum(priced.c.parts))
        ).one()
    if not parts:
        return None
    return PartPrice(rials_per_part=int(cost) / int(parts), parts=int(parts))
