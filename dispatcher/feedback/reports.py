"""After sending: Kavenegar's delivery reports (`sms sync`), paced by the shared
Kavenegar rate. Status 14 (blocked) and an SMS Kavenegar had after all are recorded as
provider events (`event.record`). README: "SMS".
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.definition.sendtime import as_utc
from dispatcher.delivery import state
from dispatcher.delivery.guard import SendGuard
from dispatcher.errors import ConfigurationError
from dispatcher.feedback.event import EventKind, ProviderEvent, record
from dispatcher.settings import Settings
from dispatcher.sms.batch import KavenegarBatcher
from dispatcher.sms.kavenegar import (
    STATUS_BATCH,
    UNKNOWN_MESSAGE,
    KavenegarError,
    KavenegarTransport,
)
from dispatcher.sms.transport import SmsTransport
from dispatcher.store.db import session_scope
from dispatcher.store.models import (
    Campaign,
    CampaignState,
    Channel,
    Delivery,
    DeliveryStatus,
    utcnow,
)

log = logging.getLogger("dispatcher.sms")

FINAL_STATUSES = {10: "delivered", 11: "undelivered", 6: "failed", 13: "cancelled", 14: "blocked"}
BLOCKED = 14
LOOKBACK = timedelta(days=3)
SETTLE_AFTER = timedelta(minutes=10)  # Kavenegar may still be taking an attempt in
MAX_LOOKUPS = 100  # per campaign and run, each a call (after an outage there may be many)


class Runtime(Protocol):
    """What sync and inbox need of the process (`dispatcher.runtime.Runtime` has it)."""

    engine: Engine
    settings: Settings

    def clock(self) -> datetime: ...

    @property
    def sms_transport(self) -> SmsTransport: ...

    def guard(self, transport: str) -> SendGuard: ...


def kavenegar(rt: Runtime) -> KavenegarTransport:
    transport = rt.sms_transport
    if isinstance(transport, KavenegarBatcher):  # sync and inbox call it directly
        transport = transport.transport
    if not isinstance(transport, KavenegarTransport):
        raise ConfigurationError(
            "KAVENEGAR_API_KEY is not set: SMS go to the outbox, there is nothing to ask Kavenegar"
        )
    return transport


# -- delivery reports ---------------------------------------------------------------------


def sync_statuses(
    rt: Runtime,
    *,
    now: datetime | None = None,
    lookback: timedelta = LOOKBACK,
    settle_after: timedelta = SETTLE_AFTER,
) -> dict[str, int]:
    """Record Kavenegar's status of recent SMS; return counts by outcome.

    Looks at campaigns still sending or finished within `lookback`, and at their sent
    SMS whose status is not final yet, 500 per call. Keys: `checked`, one per final
    state (`delivered`, `undelivered`, `failed`, `cancelled`, `blocked`), `in_progress`
    (not final yet), `unknown` (Kavenegar does not know the message), `opted_out`.
    """
    transport = kavenegar(rt)
    since = as_utc(now or rt.clock()) - lookback
    counts: Counter[str] = Counter()
    with Session(rt.engine) as session:
        campaigns = list(
            session.execute(
                select(col(Campaign.id)).where(
                    col(Campaign.channels).contains(Channel.SMS.value),
                    or_(
                        col(Campaign.state) == CampaignState.SENDING,
                        col(Campaign.finished_at) >= since,
                    ),
                )
            ).scalars()
        )
    for campaign_id in campaigns:
        assert campaign_id is not None
        _settle_unanswered(rt, transport, campaign_id, counts, utcnow() - settle_after)
        _sync_campaign(rt, transport, campaign_id, counts)
    return {key: counts[key] for key in _SYNC_KEYS}


_SYNC_KEYS = (
    "checked",
    *FINAL_STATUSES.values(),
    "in_progress",
    "unknown",
    "opted_out",
    "found_sent",
)

_NOT_THERE = (  # still failed, and known not to be at Kavenegar: not asked again
    update(Delivery)
    .where(col(Delivery.id) == bindparam("b_id"), col(Delivery.status) == DeliveryStatus.FAILED)
    .values(provider_status=UNKNOWN_MESSAGE, updated_at=bindparam("b_at"))
)


def _settle_unanswered(
    rt: Runtime,
    transport: KavenegarTransport,
    campaign_id: int,
    counts: Counter[str],
    before: datetime,
) -> None:
    """Ask Kavenegar about the campaign's SMS whose retries ran out on a transient
    error and were last touched `before`, at most `MAX_LOOKUPS` of them a run."""
    with Session(rt.engine) as session:
        ids = list(
            session.execute(
                select(col(Delivery.id))
                .where(
                    col(Delivery.campaign_id) == campaign_id,
                    col(Delivery.channel) == Channel.SMS,
                    state.retries_exhausted(),
                    col(Delivery.member_id).is_not(None),  # an erased member's: not asked
                    col(Delivery.provider_status).is_(None),
                    col(Delivery.updated_at) <= before,
                )
                .order_by(col(Delivery.id))
                .limit(MAX_LOOKUPS)
            ).scalars()
        )
    for delivery_id in ids:
        assert delivery_id is not None
        rt.guard("kavenegar").before_send()  # one sms/statuslocalmessageid call each
        try:
            result = transport.status_by_localid(delivery_id)
        except KavenegarError as exc:  # the delivery reports still go ahead
            log.warning("sms sync: could not look up delivery %s (%s)", delivery_id, exc)
            return
        with session_scope(rt.engine) as session:
            if result is None:
                session.connection().execute(_NOT_THERE, {"b_id": delivery_id, "b_at": utcnow()})
                continue
            delivered = ProviderEvent(
                EventKind.DELIVERED,
                Channel.SMS,
                delivery_id=delivery_id,
                provider_id=str(result.messageid),
                provider_status=result.status,
            )
            found = record(session, delivered)
        if found:
            counts["found_sent"] += 1
            log.info("delivery %s: Kavenegar had accepted it; recorded sent", delivery_id)


_SET_STATUS = (
    update(Delivery)
    .where(col(Delivery.id) == bindparam("b_id"))
    .values(provider_status=bindparam("b_status"), updated_at=bindparam("b_at"))
)


def _sync_campaign(
    rt: Runtime, transport: KavenegarTransport, campaign_id: int, counts: Counter[str]
) -> None:
    last = 0
    while True:
        with Session(rt.engine) as session:
            rows = session.execute(
                select(col(Delivery.id), col(Delivery.member_id), col(Delivery.provider_id))
                .where(
                    col(Delivery.campaign_id) == campaign_id,
                    col(Delivery.channel) == Channel.SMS,
                    col(Delivery.status) == DeliveryStatus.SENT,
                    col(Delivery.member_id).is_not(None),  # anonymous (erased): nobody to stop
                    col(Delivery.provider_id).is_not(None),
                    or_(
                        col(Delivery.provider_status).is_(None),
                        col(Delivery.provider_status).not_in(list(FINAL_STATUSES)),
                    ),
                    col(Delivery.id) > last,
                )
                .order_by(col(Delivery.id))
                .limit(STATUS_BATCH)
            ).all()
        if not rows:
            return
        last = rows[-1][0]
        by_message = {
            int(provider_id): (delivery_id, member_id)
            for delivery_id, member_id, provider_id in rows
            if str(provider_id).isdigit()
        }
        rt.guard("kavenegar").before_send()  # one sms/status call (up to 500 ids)
        statuses = transport.statuses(list(by_message))
        counts["checked"] += len(rows)
        counts["unknown"] += len(by_message) - len(statuses)
        now = utcnow()
        changes = []
        blocked = []
        for messageid, status in statuses.items():
            delivery_id, member_id = by_message[messageid]
            changes.append({"b_id": delivery_id, "b_status": status, "b_at": now})
            counts[FINAL_STATUSES.get(status, "in_progress")] += 1
            if status == BLOCKED:
                blocked.append(blocked_event(member_id, delivery_id))
        if not changes:
            continue
        with session_scope(rt.engine) as session:
            session.connection().execute(_SET_STATUS, changes)
            for event in blocked:
                if record(session, event):
                    counts["opted_out"] += 1
        if blocked:
            log.info("sms sync: %d members block advertising SMS", len(blocked))


def blocked_event(member_id: int, delivery_id: int | None = None) -> ProviderEvent:
    """Kavenegar's status 14: the member blocks advertising SMS."""
    return ProviderEvent(
        EventKind.BLOCKED, Channel.SMS, delivery_id=delivery_id, member_id=member_id
    )


def honour_blocked(engine: Engine, member_id: int, delivery_id: int | None = None) -> bool:
    """Record a status 14 learned outside the sync (at send time, or a retry that finds
    its SMS at Kavenegar); True if the member was opted in."""
    with session_scope(engine) as session:
        changed = record(session, blocked_event(member_id, delivery_id))
    if changed:
        log.info("member %s blocks advertising SMS (Kavenegar status 14): opted out", member_id)
    return changed
