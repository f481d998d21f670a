"""Expansion: a campaign spec becomes a Campaign row and, now or at its launch (a
scheduled one), one pending Delivery row per recipient and channel, in one transaction.

Deliveries are inserted with one `INSERT ... SELECT` per channel (the audience SQL of
`audience.selection`): of members who share an address, the lowest member id gets it.
`enqueue_pending` then reads the pending ids back in keyset-paginated chunks and
enqueues them in pipelined batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dramatiq import Actor, Broker
from sqlalchemy import (
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher import hold
from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.selection import (
    EXCLUSIONS,
    count_recipients,
    exclusion_counts,
    filter_counts,
    recipients,
)
from dispatcher.audience.suppression import fill_missing_keys
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.errors import EmptyAudienceError, InputError
from dispatcher.queue.abtest import assign_variants, not_waiting
from dispatcher.queue.broker import enqueue_ids
from dispatcher.store import counts
from dispatcher.store.models import (
    Campaign,
    CampaignState,
    Channel,
    Delivery,
    DeliveryStatus,
    Member,
    utcnow,
)

CHUNK = 5000


@dataclass
class Expansion:
    campaign: Campaign
    created: bool
    # Not created: the slug's campaign was cancelled before it sent anything, so
    # `--reuse-slug` would send it afresh.
    reusable: bool = False
    eligible: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    excluded_by: dict[str, dict[str, int]] = field(default_factory=dict)


def excluded_by(campaign: Campaign, channel: str) -> dict[str, int]:
    """The recorded `excluded_by` of a campaign's channel (zeros for older campaigns)."""
    recorded = campaign.excluded.get("excluded_by", {}).get(channel, {})
    return {name: int(recorded.get(name, 0)) for name in EXCLUSIONS}


def audience_counts(
    session: Session, spec: CampaignSpec, channel: Channel
) -> tuple[int, dict[str, int]]:
    """Deliveries the audience would get on `channel` (one per address), and why the
    other members would get none (`EXCLUSIONS`). Reads only (`campaign validate`)."""
    conn = session.connection()
    excluded = campaign_ids(session, spec.audience_exclude_campaigns)
    deliveries = count_recipients(conn, channel, spec.audience, excluded)
    return deliveries, exclusion_counts(conn, channel, spec.audience, deliveries, excluded)


def audience_filters(
    session: Session, spec: CampaignSpec, channel: Channel
) -> tuple[int, dict[str, int]]:
    """Members with the audience's tags, and how many each of `all_tags`,
    `exclude_tags` and `exclude_campaigns` removed (`FILTERS`). Reads only."""
    excluded = campaign_ids(session, spec.audience_exclude_campaigns)
    return filter_counts(session.connection(), channel, spec.audience, excluded)


def expand(
    engine: Engine,
    spec: CampaignSpec,
    *,
    keys: AddressKeys,
    send_at: datetime | None = None,
    allow_empty: bool = True,
    reuse_slug: bool = False,
) -> Expansion:
    """Record the campaign and its deliveries, once per slug.

    Without `allow_empty`, a campaign that no member would get now (an empty database,
    a tag nobody has) raises EmptyAudienceError and nothing is recorded, so the slug
    stays usable.

    A draft of that slug (`dispatcher.definition.draft`) becomes the campaign. Any other
    slug seen before is returned as it is (`created=False`): sending a campaign twice
    never sends anything twice. With `send_at` the campaign is recorded as `scheduled`
    and gets its deliveries at launch (`launch`), so that the audience is the one of the
    send time: members who joined since are included, those who left are not.

    With `reuse_slug`, a cancelled campaign of that slug that never sent anything is
    deleted with its deliveries and recorded afresh (InputError for any other).
    """
    with Session(engine, expire_on_commit=False) as session:
        existing = session.execute(select(Campaign).where(col(Campaign.slug) == spec.slug)).scalar()
        draft = existing if existing is not None and existing.state == CampaignState.DRAFT else None
        if existing is not None and reuse_slug and draft is None:
            _forget_unsent(session, existing)
        elif existing is not None and draft is None:
            return Expansion(
                campaign=existing,
                created=False,
                reusable=existing.state == CampaignState.CANCELLED
                and not _attempted(session, existing),
                excluded=dict(existing.excluded),
            )
        now = utcnow()
        frozen = spec.to_json()
        frozen["send_at"] = (send_at or now).isoformat()  # templates' `campaign.send_at`
        campaign = draft or Campaign(
            slug=spec.slug, name=spec.name, channels=""
        )  # a draft keeps its id
        campaign.name = spec.name
        campaign.channels = ",".join(spec.channels)
        campaign.state = CampaignState.SCHEDULED if send_at else CampaignState.SENDING
        campaign.spec = frozen
        campaign.send_at = send_at
        campaign.launched_at = None if send_at else now
        campaign.created_at = now
        session.add(campaign)
        session.flush()
        result = Expansion(campaign=campaign, created=True)
        if send_at is None:
            _insert_deliveries(session, campaign, spec, result, keys)
            empty = not any(result.eligible.values())
        else:
            campaign_ids(session, spec.audience_exclude_campaigns)  # checked now, used at launch
            empty = not _audience_size(session, spec)
        if empty and not allow_empty:
            session.rollback()
            raise EmptyAudienceError(
                f"campaign {spec.slug}: no member is in its audience "
                f"({_members(session)} members in the database, none reachable); "
                "nothing was recorded"
            )
        session.commit()
        return result


def _audience_size(session: Session, spec: CampaignSpec) -> int:
    """Deliveries the campaign would make now, on all its channels."""
    excluded = campaign_ids(session, spec.audience_exclude_campaigns)
    return sum(
        count_recipients(session, Channel(channel), spec.audience, excluded)
        for channel in spec.channels
    )


def campaign_ids(session: Session, slugs: list[str]) -> list[int]:
    """The ids of the campaigns named in `exclude_campaigns`; InputError for a slug
    that names none (a typo must not widen the audience)."""
    if not slugs:
        return []
    found = dict(
        session.execute(
            select(col(Campaign.slug), col(Campaign.id)).where(col(Campaign.slug).in_(slugs))
        ).all()
    )
    unknown = [slug for slug in slugs if slug not in found]
    if unknown:
        raise InputError(f"audience.exclude_campaigns: no campaign {', '.join(map(repr, unknown))}")
    return list(found.values())


def _forget_unsent(session: Session, campaign: Campaign) -> None:
    """Delete a cancelled campaign that never sent anything, and its deliveries."""
    if campaign.state != CampaignState.CANCELLED:
        raise InputError(
            f"--reuse-slug: {campaign.slug} is {campaign.state}; only a cancelled campaign "
            "can be sent again under its slug (cancel it first, or choose a new slug)"
        )
    attempted = _attempted(session, campaign)
    if attempted:
        raise InputError(
            f"--reuse-slug: {campaign.slug} sent (or tried to send) {attempted} messages "
            "before it was cancelled; its slug stays with them: choose a new slug"
        )
    session.execute(delete(Delivery).where(col(Delivery.campaign_id) == campaign.id))
    hold.forget(session, campaign.id or 0)
    session.execute(delete(Campaign).where(col(Campaign.id) == campaign.id))
    session.flush()


def _attempted(session: Session, campaign: Campaign) -> int:
    """Deliveries of the campaign that were sent, or that a worker tried to send."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.campaign_id) == campaign.id,
                or_(
                    col(Delivery.status).in_([DeliveryStatus.SENT, DeliveryStatus.SENDING]),
                    col(Delivery.attempts) > 0,
                ),
            )
        ).scalar_one()
    )


def _members(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(Member)).scalar_one())


def launch(
    engine: Engine, campaign_id: int, *, now: datetime, keys: AddressKeys
) -> Expansion | None:
    """scheduled -> sending and the deliveries, in one transaction, if due at `now`.

    The claim is a conditional update (`... WHERE state = 'scheduled'`): of two
    schedulers racing for one campaign, exactly one sees a row changed; the other gets
    None. Claim and deliveries commit together, so a scheduler that dies half-way
    leaves the campaign scheduled, never `sending` with nothing to send.
    """
    with Session(engine, expire_on_commit=False) as session:
        claimed = session.execute(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.state) == CampaignState.SCHEDULED,
                col(Campaign.send_at) <= now,
            )
            .values(state=CampaignState.SENDING, launched_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            return None
        campaign = session.get_one(Campaign, campaign_id)
        result = Expansion(campaign=campaign, created=True)
        _insert_deliveries(session, campaign, CampaignSpec.from_json(campaign.spec), result, keys)
        session.commit()
        return result


def _insert_deliveries(
    session: Session, campaign: Campaign, spec: CampaignSpec, result: Expansion, keys: AddressKeys
) -> None:
    """One pending delivery per reachable address and channel, with `INSERT ... SELECT`
    (`dispatcher.audience.selection.recipients`: of members sharing an address, the
    lowest member id)."""
    conn = session.connection()
    fill_missing_keys(conn, keys)
    excluded = campaign_ids(session, spec.audience_exclude_campaigns)
    recorded: dict[str, Any] = {}
    for channel in spec.channels:
        chosen = (
            select(
                literal(campaign.id),
                col(Member.id),
                literal(str(channel)),
                literal(str(DeliveryStatus.PENDING)),
                literal(0),
                literal(utcnow()),
            )
            .where(recipients(channel, spec.audience, excluded))
            .order_by(col(Member.id))
        )
        written = session.execute(
            insert(Delivery)
            .from_select(
                ["campaign_id", "member_id", "channel", "status", "attempts", "updated_at"],
                chosen,
            )
            .execution_options(preserve_rowcount=True)
        )
        inserted = int(written.rowcount)  # type: ignore[attr-defined]
        if inserted < 0:  # a driver that does not say: count them
            inserted = session.execute(
                select(func.count())
                .select_from(Delivery)
                .where(
                    col(Delivery.campaign_id) == campaign.id, col(Delivery.channel) == str(channel)
                )
            ).scalar_one()
        counts.add_inserted(conn, campaign.id or 0, str(channel), inserted)
        by = exclusion_counts(conn, channel, spec.audience, inserted, excluded)
        result.eligible[str(channel)] = inserted
        result.excluded[str(channel)] = sum(by.values())
        result.excluded_by[str(channel)] = by
        recorded[str(channel)] = sum(by.values())
    recorded["excluded_by"] = result.excluded_by
    campaign.excluded = recorded
    if spec.ab is not None and Channel.EMAIL in spec.channels:  # the rest wait for the winner
        assign_variants(conn, campaign, spec.ab)
    session.add(campaign)


def pending_ids(engine: Engine, campaign_id: int, channel: str) -> Iterator[list[int]]:
    """Ids of pending deliveries in chunks, by keyset pagination (memory flat in N), on
    one connection, each chunk fetched whole."""
    table = Delivery.__table__  # type: ignore[attr-defined]
    query = (
        select(table.c.id)
        .where(
            table.c.campaign_id == campaign_id,
            table.c.channel == channel,
            table.c.status == DeliveryStatus.PENDING,
            table.c.id > bindparam("last"),
            not_waiting(),  # an A/B test's rest: enqueued once decided
        )
        .order_by(table.c.id)
        .limit(CHUNK)
    )
    last = 0
    with engine.connect() as conn:
        while True:
            ids: list[int] = list(conn.execute(query, {"last": last}).scalars().all())
            if not ids:
                return
            yield ids
            last = ids[-1]


def enqueue_pending(
    engine: Engine,
    broker: Broker,
    campaign: Campaign,
    actors: dict[str, Actor],
    on_progress: Callable[[int], None] | None = None,
    *,
    channels: Iterable[str] | None = None,
) -> int:
    """One message per pending delivery (of `channels`, default all the campaign's),
    carrying its id only."""
    assert campaign.id is not None
    total = 0
    for channel in channels if channels is not None else campaign.channel_list():
        # One enqueue per channel: the next chunk is read while the broker takes the
        # last (Redis: its writer thread; RabbitMQ: one connection, one confirm window).
        chunks = pending_ids(engine, campaign.id, str(channel))
        total += enqueue_ids(broker, actors[str(channel)], _flat(chunks, on_progress))
    return total


def _flat(chunks: Iterable[list[int]], on_progress: Callable[[int], None] | None) -> Iterator[int]:
    """The ids of `chunks` one by one, `on_progress` told of each chunk handed on."""
    for ids in chunks:
        yield from ids
        if on_progress:
            on_progress(len(ids))
