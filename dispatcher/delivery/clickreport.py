"""The clicks and the A/B test in `campaign report`: per channel and variant, per link,
and the test's variants with its decision. Counts only: nothing per member.

Without an A/B test every message is variant "A".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import Session, col

from dispatcher.definition.campaign import CampaignSpec
from dispatcher.delivery.clicks import ANY_LINK
from dispatcher.delivery.tracking import spec_links
from dispatcher.store import counts
from dispatcher.store.models import (
    Campaign,
    Channel,
    ClickCount,
    ConsentEvent,
    Delivery,
    DeliveryStatus,
)


def _name(variant: str | None) -> str:
    return variant or "A"


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def sent_by_variant(session: Session, campaign_id: int, channel: Channel) -> dict[str, int]:
    rows = session.execute(
        select(col(Delivery.variant), func.count())
        .where(
            col(Delivery.campaign_id) == campaign_id,
            col(Delivery.channel) == str(channel),
            col(Delivery.status) == DeliveryStatus.SENT,
        )
        .group_by(col(Delivery.variant))
    ).all()
    out: dict[str, int] = defaultdict(int)
    for variant, n in rows:
        out[_name(variant)] += n
    return dict(out)


def click_section(session: Session, campaign: Campaign, channel: Channel) -> dict[str, Any]:
    """`unique_clicks`, `click_rate`, `scanner_clicks`, `click_variants` (per variant:
    sent, unique clicks, rate) and `clicks` (per link and variant: url, clicks, unique,
    scanner) of one channel."""
    assert campaign.id is not None
    rows = session.execute(
        select(
            col(ClickCount.link),
            col(ClickCount.variant),
            func.sum(ClickCount.clicks),
            func.sum(ClickCount.unique_clicks),
            func.sum(ClickCount.scanner),
        )
        .where(col(ClickCount.campaign_id) == campaign.id, col(ClickCount.channel) == str(channel))
        .group_by(col(ClickCount.link), col(ClickCount.variant))
        .order_by(col(ClickCount.link), col(ClickCount.variant))
    ).all()
    links = spec_links(CampaignSpec.from_json(campaign.spec))
    if campaign.ab_state is None:  # no test: every sent delivery is the one variant's
        by = counts.of_campaigns(session.connection(), [campaign.id]).get(campaign.id, {})
        found = by.get((str(channel), DeliveryStatus.SENT), 0)
        sent = {_name(None): found} if found else {}
    else:
        sent = sent_by_variant(session, campaign.id, channel)
    unique: dict[str, int] = defaultdict(int)
    per_link: list[dict[str, Any]] = []
    for link, variant, clicks, uniq, scanner in rows:
        if link == ANY_LINK:
            unique[_name(variant)] += int(uniq or 0)
            continue
        per_link.append(
            {
                "url": links[link] if 0 <= link < len(links) else None,
                "variant": _name(variant),
                "clicks": int(clicks or 0),
                "unique": int(uniq or 0),
                "scanner": int(scanner or 0),
            }
        )
    names = sorted(set(sent) | set(unique))
    total_sent = sum(sent.values())
    return {
        "unique_clicks": sum(unique.values()),
        "click_rate": _rate(sum(unique.values()), total_sent),
        "scanner_clicks": sum(r["scanner"] for r in per_link),
        "click_variants": [
            {
                "variant": name,
                "sent": sent.get(name, 0),
                "unique_clicks": unique.get(name, 0),
                "click_rate": _rate(unique.get(name, 0), sent.get(name, 0)),
            }
            for name in names
        ],
        "clicks": per_link,
    }


def ab_section(session: Session, campaign: Campaign) -> dict[str, Any] | None:
    """The A/B test: each variant's subject, sent, unique clicks, click rate and
    opt-outs, and the decision (None while testing) with its p-value."""
    ab = CampaignSpec.from_json(campaign.spec).ab
    if ab is None or campaign.id is None:
        return None
    sent = sent_by_variant(session, campaign.id, Channel.EMAIL)
    unique = dict(
        session.execute(
            select(col(ClickCount.variant), func.sum(ClickCount.unique_clicks))
            .where(
                col(ClickCount.campaign_id) == campaign.id,
                col(ClickCount.channel) == str(Channel.EMAIL),
                col(ClickCount.link) == ANY_LINK,
            )
            .group_by(col(ClickCount.variant))
        ).all()
    )
    optouts = dict(
        session.execute(
            select(col(Delivery.variant), func.count(func.distinct(ConsentEvent.id)))
            .join(
                Delivery,
                and_(
                    col(Delivery.member_id) == col(ConsentEvent.member_id),
                    col(Delivery.campaign_id) == col(ConsentEvent.campaign_id),
                    col(Delivery.channel) == col(ConsentEvent.channel),
                ),
            )
            .where(
                col(ConsentEvent.campaign_id) == campaign.id,
                col(ConsentEvent.channel) == str(Channel.EMAIL),
                col(ConsentEvent.opted_in).is_(False),
            )
            .group_by(col(Delivery.variant))
        ).all()
    )
    variants = []
    for name in ab.names:
        clicks = int(unique.get(name) or 0)
        variants.append(
            {
                "name": name,
                "subject": ab.subject(name),
                "sent": sent.get(name, 0),
                "unique_clicks": clicks,
                "click_rate": _rate(clicks, sent.get(name, 0)),
                "opt_outs": int(optouts.get(name, 0)),
            }
        )
    return {
        "variants": variants,
        "winner": campaign.ab_winner,
        "decided_by": campaign.ab_decided_by,
        "p_value": round(campaign.ab_p_value, 4) if campaign.ab_p_value is not None else None,
        "test_share": ab.test_share,
        "decide_after": ab.decide_after,
        "winner_by": ab.winner_by,
    }
