"""A varied sample of a campaign's audience, and its size per channel, for `validate`.

The sample covers what templates trip on: some members of each tag, members with
empty fields (no first or last name, no email, no mobile), names in Latin as well as
Persian script, and then members spread evenly over the rest, `size` at least.
Read-only: nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.audience.selection import in_audience
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.store.models import Member, MemberTag

PER_KIND = 5  # members per tag and per kind of empty field
MAX_TAGS = 200


def everyone(engine: Engine, spec: CampaignSpec, batch: int = 1000) -> Iterator[Member]:
    """Every member of the audience (whatever their consent), streamed."""
    query = (
        select(Member)
        .where(in_audience(spec.audience))
        .order_by(col(Member.id))
        .execution_options(yield_per=batch)
    )
    with Session(engine) as session:
        yield from session.execute(query).scalars()


def varied_sample(engine: Engine, spec: CampaignSpec, *, size: int = 200) -> list[Member]:
    """At least `size` members of the audience (all of it if smaller), chosen to vary."""
    audience = in_audience(spec.audience)
    chosen: dict[int, Member] = {}

    def take(*where: ColumnElement[bool], limit: int = PER_KIND) -> list[Member]:
        rows = session.execute(
            select(Member).where(audience, *where).order_by(col(Member.id)).limit(limit)
        ).scalars()
        found = list(rows)
        chosen.update((m.id, m) for m in found if m.id is not None)
        return found

    with Session(engine, expire_on_commit=False) as session:
        total = session.execute(select(func.count()).select_from(Member).where(audience)).scalar()
        tags = session.execute(
            select(col(MemberTag.tag)).distinct().order_by(col(MemberTag.tag)).limit(MAX_TAGS)
        ).scalars()
        for tag in list(tags):
            take(
                col(Member.id).in_(
                    select(col(MemberTag.member_id)).where(col(MemberTag.tag) == tag)
                )
            )
        take(col(Member.first_name) == "")
        take(col(Member.last_name) == "")
        take(or_(col(Member.email).is_(None), col(Member.email) == ""))
        take(or_(col(Member.mobile).is_(None), col(Member.mobile) == ""))
        take(col(Member.tags) == "")
        # Spread over the ids; Latin-script names are picked out of that spread first.
        step = max(1, (total or 0) // (size * 4))
        spread = list(
            session.execute(
                select(Member)
                .where(audience, col(Member.id) % step == 0)
                .order_by(col(Member.id))
                .limit(size * 4)
            ).scalars()
        )
        latin = [m for m in spread if m.first_name[:1].isascii() and m.first_name[:1].isalpha()]
        for member in latin[: PER_KIND * 4] + spread:
            if len(chosen) >= size:
                break
            chosen.setdefault(member.id or 0, member)
    return sorted(chosen.values(), key=lambda m: m.id or 0)
