"""An A/B test's decision, made once: by the clicks after `decide_after` (the scheduler)
or by hand (`campaign ab-pick`).

By the clicks, the variant with the highest unique click rate (unique clickers /
sent) wins when a two-proportion z-test against each other variant gives p < 0.05;
otherwise variant A goes to the rest and the decision is "no clear winner". The
decision and the rest's variant are written in one transaction behind a conditional
update (`... WHERE ab_state = 'testing'`): a second scheduler, or one killed half-way
and started again, can never decide twice, and a delivery's variant, once set, never
changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.measuring import AbSpec
from dispatcher.delivery.clicks import ANY_LINK
from dispatcher.errors import InputError, NotFoundError
from dispatcher.queue.abtest import DECIDED, TESTING
from dispatcher.store.models import (
    AbDecidedBy,
    Campaign,
    CampaignState,
    Channel,
    ClickCount,
    Delivery,
    DeliveryStatus,
)

SIGNIFICANCE = 0.05


@dataclass(frozen=True, slots=True)
class VariantStats:
    name: str
    sent: int
    unique_clicks: int

    @property
    def rate(self) -> float:
        return self.unique_clicks / self.sent if self.sent else 0.0


@dataclass
class Decision:
    winner: str
    decided_by: AbDecidedBy
    p_value: float | None
    waiting_ids: list[int] = field(default_factory=list)  # the rest: enqueue them


def p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the two-proportion z-test (pooled) of x1/n1 against x2/n2."""
    if not n1 or not n2:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def choose(stats: list[VariantStats]) -> tuple[str, AbDecidedBy, float]:
    """The winner by the clicks: the best rate if it beats every other variant at
    p < 0.05 (the largest of those p-values is reported), else A."""
    best = max(stats, key=lambda s: s.rate)  # the first of equals: A before B
    others = [s for s in stats if s is not best]
    worst_p = max(p_value(best.unique_clicks, best.sent, o.unique_clicks, o.sent) for o in others)
    if best.rate > max(o.rate for o in others) and worst_p < SIGNIFICANCE:
        return best.name, AbDecidedBy.CLICKS, worst_p
    return stats[0].name, AbDecidedBy.NO_CLEAR_WINNER, worst_p


def variant_stats(conn: Connection, campaign_id: int, names: list[str]) -> list[VariantStats]:
    """Each variant's sent emails and unique clickers (scanners left out), so far."""
    sent = dict(
        conn.execute(
            select(col(Delivery.variant), func.count())
            .where(
                col(Delivery.campaign_id) == campaign_id,
                col(Delivery.channel) == str(Channel.EMAIL),
                col(Delivery.status) == DeliveryStatus.SENT,
                col(Delivery.variant).is_not(None),
            )
            .group_by(col(Delivery.variant))
        ).all()
    )
    clicks = dict(
        conn.execute(
            select(col(ClickCount.variant), func.sum(ClickCount.unique_clicks))
            .where(
                col(ClickCount.campaign_id) == campaign_id,
                col(ClickCount.channel) == str(Channel.EMAIL),
                col(ClickCount.link) == ANY_LINK,
            )
            .group_by(col(ClickCount.variant))
        ).all()
    )
    return [VariantStats(n, int(sent.get(n, 0)), int(clicks.get(n) or 0)) for n in names]


def _ab(session: Session, campaign_id: int) -> tuple[Campaign, AbSpec]:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    ab = CampaignSpec.from_json(campaign.spec).ab
    if ab is None:
        raise InputError(f"campaign {campaign.slug} has no [ab] test")
    return campaign, ab


def decide(
    engine: Engine,
    campaign_id: int,
    *,
    now: datetime,
    winner: str | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Decision | None:
    """Decide the campaign's A/B test now: `winner` by hand, or by the clicks. None when
    it was decided already (or has no test running). `before_commit`: called inside the
    transaction, after every write (a test stops there)."""
    with Session(engine) as session:
        campaign, ab = _ab(session, campaign_id)
        if campaign.ab_state != TESTING:
            return None
        conn = session.connection()
        if winner is not None:
            if winner not in ab.names:
                raise InputError(
                    f"campaign {campaign.slug}: no variant {winner!r} "
                    f"(its variants: {', '.join(ab.names)})"
                )
            decision = Decision(winner, AbDecidedBy.MANUAL, None)
        else:
            decision = Decision(*choose(variant_stats(conn, campaign_id, ab.names)))
        claimed = conn.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.ab_state) == TESTING)
            .values(
                ab_state=DECIDED,
                ab_winner=decision.winner,
                ab_decided_by=str(decision.decided_by),
                ab_p_value=decision.p_value,
                ab_decided_at=now,
            )
        )
        if claimed.rowcount != 1:
            return None
        # (`waiting` reads the campaign's state, decided now: the rest by their columns)
        rest = select(col(Delivery.id)).where(
            col(Delivery.campaign_id) == campaign_id,
            col(Delivery.channel) == str(Channel.EMAIL),
            col(Delivery.status) == DeliveryStatus.PENDING,
            col(Delivery.variant).is_(None),
        )
        decision.waiting_ids = [
            i for i in conn.execute(rest.order_by(col(Delivery.id))).scalars() if i is not None
        ]
        conn.execute(
            update(Delivery)
            .where(
                col(Delivery.campaign_id) == campaign_id,
                col(Delivery.channel) == str(Channel.EMAIL),
                col(Delivery.variant).is_(None),
            )
            .values(variant=decision.winner)
        )
        if before_commit is not None:
            before_commit()
        session.commit()
    return decision


def due(engine: Engine, now: datetime) -> list[int]:
    """Campaigns whose test the scheduler decides now: sending, `winner_by = "clicks"`,
    launched `decide_after` ago."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(col(Campaign.id), col(Campaign.launched_at), Campaign.spec).where(  # type: ignore[call-overload]
                col(Campaign.ab_state) == TESTING, col(Campaign.state) == CampaignState.SENDING
            )
        ).all()
    found = []
    for campaign_id, launched_at, spec in rows:
        ab = CampaignSpec.from_json(spec).ab
        if ab is None or ab.winner_by != "clicks" or launched_at is None:
            continue
        start = launched_at if launched_at.tzinfo else launched_at.replace(tzinfo=UTC)
        if start + timedelta(seconds=ab.decide_after_seconds) <= now:
            found.append(campaign_id)
    return found
