"""What a campaign did, per channel, read from the database: `campaign report`.

Built on `campaign_status` (the counts, the exclusions whatever causes it gives,
bounces and complaints), plus: failures and skips grouped by reason (addresses in provider replies
masked), opt-outs attributed to the campaign (its id travels in the unsubscribe
token), SMS parts and the cost Kavenegar returned, the first and last send, the
rate, and deliveries per minute by outcome (for the charts).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.delivery.clickreport import ab_section, click_section
from dispatcher.delivery.status import campaign_status
from dispatcher.logs import mask
from dispatcher.masking import mask_email, mask_mobile
from dispatcher.store import counts
from dispatcher.store.models import (
    Campaign,
    Channel,
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    Member,
)

OUTCOMES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
UNKNOWN_EXCLUSION = "opted out, no address or left out by the audience"  # no breakdown


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _reason(code: int | None, message: str | None) -> str:
    """The code and the message, the code once: a relay's reply already starts with it
    (`550 5.1.1 ...`, or `retries exhausted: 421 ...`)."""
    text = mask(message or "no reason recorded")
    if code is None or re.match(rf"(?:.*?: )?{code}\b", text):
        return text
    return f"{code} {text}"


def _excluded_by(row: dict[str, Any]) -> dict[str, int]:
    """Exclusions by cause, as `campaign status` counts them (one total when it gives
    no breakdown)."""
    by = row.get("excluded_by")
    if isinstance(by, dict):
        return {str(k): int(v) for k, v in by.items()}
    total = int(row.get("excluded", 0))
    return {UNKNOWN_EXCLUSION: total} if total else {}


def campaign_report(engine: Engine, slug: str, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """`{"slug", "name", "state", ..., "email": {...}, "sms": {...}}`; NotFoundError for an
    unknown slug."""
    zone = zone or ZoneInfo("UTC")
    status = campaign_status(engine, slug, zone)
    report: dict[str, Any] = {k: v for k, v in status.items() if k not in ("email", "sms")}
    with Session(engine) as session:
        campaign = session.execute(select(Campaign).where(col(Campaign.slug) == slug)).scalar_one()
        assert campaign.id is not None
        for channel in campaign.channel_list():
            row = status[str(channel)]
            report[str(channel)] = _channel(session, campaign.id, channel, row, zone)
            report[str(channel)].update(click_section(session, campaign, channel))
        ab = ab_section(session, campaign)  # an A/B test's variants and decision
        if ab is not None:
            report["ab"] = ab
    return report


def _channel(
    session: Session, campaign_id: int, channel: Channel, row: dict[str, Any], zone: ZoneInfo
) -> dict[str, Any]:
    mine = (col(Delivery.campaign_id) == campaign_id, col(Delivery.channel) == str(channel))
    reasons: dict[str, Counter[str]] = {"failed": Counter(), "skipped": Counter()}
    for status, code, message, n in session.execute(
        select(
            col(Delivery.status),
            col(Delivery.error_code),
            col(Delivery.error_message),
            func.count(),
        )
        .where(*mine, col(Delivery.status).in_([DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]))
        .group_by(col(Delivery.status), col(Delivery.error_code), col(Delivery.error_message))
    ).all():
        reasons[status][_reason(code, message)] += n
    per_minute: dict[str, Counter[str]] = defaultdict(Counter)
    first = last = None
    for status, minute, n, earliest, latest in counts.per_minute(
        session.connection(), campaign_id, str(channel)
    ):
        at = datetime.fromtimestamp(minute * 60, UTC)
        per_minute[at.astimezone(zone).strftime("%Y-%m-%d %H:%M")][status] += n
        if status == DeliveryStatus.SENT and earliest is not None and latest is not None:
            earliest, latest = _utc(earliest), _utc(latest)
            first = earliest if first is None or earliest < first else first
            last = latest if last is None or latest > last else last
    optouts = session.execute(
        select(func.count())
        .select_from(ConsentEvent)
        .where(
            col(ConsentEvent.campaign_id) == campaign_id,
            col(ConsentEvent.channel) == str(channel),
            col(ConsentEvent.opted_in).is_(False),
        )
    ).scalar_one()
    excluded_by = _excluded_by(row)
    deliveries = sum(
        int(row.get(s, 0)) for s in ("pending", "sending", "sent", "skipped", "failed")
    )
    seconds = (last - first).total_seconds() if first and last else 0.0
    out: dict[str, Any] = {
        "audience": deliveries + sum(excluded_by.values()),
        "deliveries": deliveries,
        "sent": int(row.get("sent", 0)),
        "failed": int(row.get("failed", 0)),
        "failed_by_reason": dict(reasons["failed"].most_common()),
        "skipped": int(row.get("skipped", 0)),
        "skipped_by_reason": dict(reasons["skipped"].most_common()),
        "pending": int(row.get("pending", 0)) + int(row.get("sending", 0)),
        "excluded": sum(excluded_by.values()),
        "excluded_by": excluded_by,
        "optouts": optouts,
        "bounced": int(row.get("bounced", 0)),
        "complained": int(row.get("complained", 0)),
        "first_sent": first.isoformat(timespec="seconds") if first else None,
        "last_sent": last.isoformat(timespec="seconds") if last else None,
        "per_minute_rate": round(row.get("sent", 0) / (max(seconds, 1.0) / 60), 1)
        if first
        else None,
        "per_minute": [
            {"minute": minute, **{str(s): counts.get(s, 0) for s in OUTCOMES}}
            for minute, counts in sorted(per_minute.items())
        ],
    }
    if channel is Channel.SMS:
        parts, cost = session.execute(
            select(func.sum(Delivery.sms_parts), func.sum(Delivery.cost)).where(
                *mine, col(Delivery.status) == DeliveryStatus.SENT
            )
        ).one()
        out["parts"] = int(parts or 0)
        out["cost_rials"] = int(cost or 0)
        out["delivered"] = int(row.get("delivered", 0))
        out["undelivered"] = int(row.get("undelivered", 0))
    return out


RECIPIENT_COLUMNS = ("external_id", "channel", "address", "status", "reason")  # the CSV's


@dataclass(frozen=True, slots=True)
class Recipient:
    """One failed or skipped delivery, for the CSV: nothing shown whole."""

    external_id: str
    channel: str
    address: str  # masked
    status: str
    reason: str


def unsent_recipients(engine: Engine, slug: str) -> Iterator[Recipient]:
    """The campaign's failed and skipped deliveries, by channel and member, streamed."""
    query = (
        select(
            col(Member.external_id),
            col(Member.email),
            col(Member.mobile),
            col(Delivery.channel),
            col(Delivery.status),
            col(Delivery.error_code),
            col(Delivery.error_message),
        )
        .join(Member, col(Member.id) == col(Delivery.member_id))
        .join(Campaign, col(Campaign.id) == col(Delivery.campaign_id))
        .where(
            col(Campaign.slug) == slug,
            col(Delivery.status).in_([DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]),
        )
        .order_by(col(Delivery.channel), col(Delivery.id))
        .execution_options(yield_per=1000)
    )
    with Session(engine) as session:
        for ext, email, mobile, channel, status, code, message in session.execute(query):
            address = (
                mask_email(email or "") if channel == Channel.EMAIL else mask_mobile(mobile or "")
            )
            yield Recipient(ext, channel, address, status, _reason(code, message))
