"""Drafts in the database: a campaign in state `draft`, its form in `Campaign.spec`
(`{"draft": {...}}`) and no deliveries. Scheduling one is `expansion.expand`, which
turns the same row into the campaign."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from dispatcher.definition.draft import Draft
from dispatcher.errors import ControlError, InputError, NotFoundError
from dispatcher.store.models import Campaign, CampaignState


def _stored(draft: Draft) -> dict[str, object]:
    return {"draft": draft.to_json()}


def create_draft(engine: Engine, draft: Draft) -> Campaign:
    """A new draft; InputError when the slug is empty or taken."""
    if not draft.slug:
        raise InputError("slug: required: a short unique name such as 'yalda-1405'")
    campaign = Campaign(
        slug=draft.slug,
        name=draft.name or draft.slug,
        channels=",".join(draft.channels),
        state=CampaignState.DRAFT,
        spec=_stored(draft),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(campaign)
        try:
            session.commit()
        except IntegrityError:
            raise InputError(f"slug: a campaign {draft.slug!r} exists already") from None
    return campaign


def load_draft(engine: Engine, slug: str) -> tuple[Campaign, Draft]:
    """The draft of `slug`; NotFoundError, or ControlError when it is no longer a draft."""
    with Session(engine, expire_on_commit=False) as session:
        campaign = session.execute(select(Campaign).where(col(Campaign.slug) == slug)).scalar()
    if campaign is None:
        raise NotFoundError(f"no campaign with slug {slug!r}")
    if campaign.state != CampaignState.DRAFT:
        raise ControlError(f"{slug} is {campaign.state}: only a draft can be edited")
    return campaign, Draft.from_json(campaign.spec.get("draft", {}))


def save_draft(engine: Engine, slug: str, draft: Draft) -> Campaign:
    """Replace the draft of `slug` with `draft` (which may change the slug)."""
    campaign, _old = load_draft(engine, slug)
    if not draft.slug:
        raise InputError("slug: required: a short unique name such as 'yalda-1405'")
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(Campaign, campaign.id)
        if row is None or row.state != CampaignState.DRAFT:
            raise ControlError(f"{slug} is no longer a draft")
        row.slug, row.name = draft.slug, draft.name or draft.slug
        row.channels, row.spec = ",".join(draft.channels), _stored(draft)
        try:
            session.commit()
        except IntegrityError:
            raise InputError(f"slug: a campaign {draft.slug!r} exists already") from None
        return row


def import_draft(engine: Engine, draft: Draft) -> Campaign:
    """A draft from a campaign file: a new one, or the draft of that slug replaced."""
    with Session(engine) as session:
        state = session.execute(
            select(col(Campaign.state)).where(col(Campaign.slug) == draft.slug)
        ).scalar()
    if state == CampaignState.DRAFT:
        return save_draft(engine, draft.slug, draft)
    return create_draft(engine, draft)


def keep_review(engine: Engine, campaign_id: int, review: dict[str, object]) -> None:
    """Keep what the draft's check found with the draft (shown until the next save)."""
    with Session(engine) as session:
        row = session.get(Campaign, campaign_id)
        if row is not None and row.state == CampaignState.DRAFT:
            row.spec = {**row.spec, "review": review}
            session.commit()
