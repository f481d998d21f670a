"""Who gets a delivery on a channel, as SQL: the audience, consent, one per address.

A member gets one when they are in the campaign's audience (any of its tags, all of
`all_tags`, none of `exclude_tags`, not sent `exclude_campaigns` on it), opted in
to the channel, with an address for it that is not suppressed, and no member with a
lower id has the same address and would get one too: of members sharing an address,
the lowest member id gets the message. Everything is a condition on `member` rows, so
expansion is one `INSERT ... SELECT` per channel, and `campaign validate` counts the
same thing without writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select

from dispatcher.audience.suppression import suppressed
from dispatcher.channels import spec_of
from dispatcher.definition.campaign import Audience
from dispatcher.store.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Member,
    MemberTag,
    Suppression,
)

_M = Member.__table__  # type: ignore[attr-defined]
_T = MemberTag.__table__  # type: ignore[attr-defined]
_D = Delivery.__table__  # type: ignore[attr-defined]
# An audience: the campaign's `Audience`, or just its tags (None: everyone).
Who = Audience | list[str] | None
_SHARED = aliased(_M, name="shared")
# Why an audience member got no delivery on a channel (`excluded_by`; keys always there).
EXCLUSIONS = ("opted_out", "no_address", "duplicate_address", "suppressed")


def in_audience(
    who: Who, member: Any = _M, *, channel: Channel | None = None, excluded: Sequence[int] = ()
) -> ColumnElement[bool]:
    """Members in the audience; `excluded`: ids of campaigns that, sent to a member on
    `channel`, leave it out (each condition an indexed lookup)."""
    audience = who if isinstance(who, Audience) else Audience(tags=who)
    clauses = [_tagged(audience.tags, member)] if audience.tags else []
    clauses += [_tagged([tag], member) for tag in dict.fromkeys(audience.all_tags)]
    if audience.exclude_tags:
        clauses.append(not_(_tagged(audience.exclude_tags, member)))
    if excluded and channel is not None:
        sent = select(_D.c.id).where(
            _D.c.campaign_id.in_(list(excluded)),
            _D.c.member_id == member.c.id,
            _D.c.channel == str(channel),
            _D.c.status == str(DeliveryStatus.SENT),
        )
        clauses.append(not_(exists(sent)))
    return and_(*clauses) if clauses else true()


# What each of the audience's narrowing rules removed, applied in this order.
FILTERS = ("all_tags", "exclude_tags", "exclude_campaigns")


def filter_counts(
    conn: Any, channel: Channel, who: Who, excluded: Sequence[int] = ()
) -> tuple[int, dict[str, int]]:
    """Members with any of the audience's tags (everyone without tags), and how many of
    them each rule of `FILTERS` then removed from those left by the rules before it."""
    audience = who if isinstance(who, Audience) else Audience(tags=who)
    tagged = _tagged(audience.tags, _M) if audience.tags else true()
    kept_all = and_(*[_tagged([tag], _M) for tag in dict.fromkeys(audience.all_tags)], true())
    not_excluded = not_(_tagged(audience.exclude_tags, _M)) if audience.exclude_tags else true()
    not_sent = in_audience(None, channel=channel, excluded=excluded)
    total, all_tags, exclude_tags, exclude_campaigns = conn.execute(
        select(
            func.count(),
            func.count().filter(not_(kept_all)),
            func.count().filter(and_(kept_all, not_(not_excluded))),
            func.count().filter(and_(kept_all, not_excluded, not_(not_sent))),
        )
        .select_from(_M)
        .where(tagged)
    ).one()
    removed = (int(all_tags), int(exclude_tags), int(exclude_campaigns))
    return int(total), dict(zip(FILTERS, removed, strict=True))


def _tagged(tags: list[str], member: Any) -> ColumnElement[bool]:
    return exists(select(_T.c.member_id).where(_T.c.member_id == member.c.id, _T.c.tag.in_(tags)))


def has_address(channel: Channel, member: Any = _M) -> ColumnElement[bool]:
    """An address for the channel (a mobile not refused as invalid by the provider)."""
    return spec_of(channel).has_address(member)


def opted_in(channel: Channel, member: Any = _M) -> ColumnElement[bool]:
    return spec_of(channel).opted_in(member)


def reachable(channel: Channel) -> ColumnElement[bool]:
    """Opted in to the channel, with an address for it that is not suppressed."""
    return and_(opted_in(channel), has_address(channel), not_(suppressed(channel)))


def first_of_address(
    channel: Channel, who: Who, excluded: Sequence[int] = ()
) -> ColumnElement[bool]:
    """No member with a lower id, the same address and consent is in the audience.

    (Suppression need not be checked for that member: it is the same address.) A
    member whose key is not known yet is never anyone's duplicate.

    Only keys that several members share are looked up per member: they are found
    first in one ordered pass over the key's index, so the common case (an address
    of one member) costs a probe into that small set, not a random read of the index.
    """
    other = aliased(_M)
    key = spec_of(channel).key
    shared = (
        select(_SHARED.c[key])
        .where(_SHARED.c[key].is_not(None))
        .group_by(_SHARED.c[key])
        .having(func.count() > 1)
    )
    return or_(
        _M.c[key].not_in(shared),
        not_(
            exists(
                select(other.c.id).where(
                    other.c[key] == _M.c[key],
                    other.c.id < _M.c.id,
                    opted_in(channel, other),
                    has_address(channel, other),
                    in_audience(who, other, channel=channel, excluded=excluded),
                )
            )
        ),
    )


def recipients(channel: Channel, who: Who, excluded: Sequence[int] = ()) -> ColumnElement[bool]:
    """The members that get a delivery on `channel`."""
    return and_(
        in_audience(who, channel=channel, excluded=excluded),
        reachable(channel),
        first_of_address(channel, who, excluded),
    )


def exclusion_counts(
    conn: Any, channel: Channel, who: Who, deliveries: int, excluded: Sequence[int] = ()
) -> dict[str, int]:
    """Why the audience members without a delivery have none, given how many got one."""
    address, opted = has_address(channel), opted_in(channel)
    audience = in_audience(who, channel=channel, excluded=excluded)
    total, no_address, opted_out = conn.execute(
        select(
            func.count(),
            func.count().filter(not_(address)),
            func.count().filter(and_(address, not_(opted))),
        ).where(audience)
    ).one()
    key = _M.c[spec_of(channel).key]
    blocked = conn.execute(
        _suppressed_members(channel).where(audience, address, opted, key.is_not(None))
    ).scalar_one()
    duplicates = int(total) - int(no_address) - int(opted_out) - int(blocked) - deliveries
    return {
        "opted_out": int(opted_out),
        "no_address": int(no_address),
        "duplicate_address": duplicates,
        "suppressed": int(blocked),
    }


def _suppressed_members(channel: Channel) -> Select[Any]:
    """Counts members whose address is suppressed, driven by the (small) suppression
    list: `key IN (SELECT address_key ...)` is an index lookup per suppressed address."""
    table = Suppression.__table__  # type: ignore[attr-defined]
    listed = select(table.c.address_key).where(table.c.channel == str(channel))
    return select(func.count()).where(_M.c[spec_of(channel).key].in_(listed))


def count_recipients(conn: Any, channel: Channel, who: Who, excluded: Sequence[int] = ()) -> int:
    """How many members `recipients` selects (for `campaign validate`)."""
    chosen = recipients(channel, who, excluded)
    return int(conn.execute(select(func.count()).where(chosen)).scalar_one())
