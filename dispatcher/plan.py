"""What `campaign validate`, `campaign send` and the console's drafts share: a campaign
loaded with the settings' limits, the audience it would reach now, its problems over a
varied sample, the SMS length and cost, and the rules of scheduling it (a past time
refused, an empty audience refused, MAIL_FROM needed for email)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dramatiq import Actor, Broker
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.selection import recipients
from dispatcher.definition.campaign import (
    SAMPLE_MEMBER,
    SAMPLE_UNSUBSCRIBE_URL,
    Audience,
    CampaignSpec,
    load_campaign,
)
from dispatcher.definition.check import EDGE_MEMBERS, RenderProblem, render_problems
from dispatcher.definition.draft import Draft
from dispatcher.definition.rendering import CampaignTemplates, shop_name
from dispatcher.definition.sendtime import future_send_at
from dispatcher.errors import DispatcherError, InputError
from dispatcher.queue import sample
from dispatcher.queue.expansion import (
    Expansion,
    audience_counts,
    audience_filters,
    campaign_ids,
    enqueue_pending,
    expand,
)
from dispatcher.settings import Settings
from dispatcher.sms.text import SmsLength, measure, with_footer
from dispatcher.store.models import Channel, Member

NOW = "now"
SAMPLE_LINKS = 8  # members of the varied sample the console offers to preview


def load_options(s: Settings) -> dict[str, Any]:
    """The keyword arguments of `load_campaign` that come from the settings."""
    return {
        "sms_footer": s.sms_optout_footer,
        "sms_max_parts": s.sms_max_parts,
        "allowed_from_domains": s.from_domains,
    }


def load_checked(path: Path, s: Settings) -> CampaignSpec:
    """`load_campaign` with the settings' limits (CampaignError lists the problems)."""
    return load_campaign(path, **load_options(s))


def audience_counts_of(engine: Engine, spec: CampaignSpec) -> dict[str, Any]:
    """`{channel: {deliveries, excluded, excluded_by, tagged, removed_by}}`: what sending
    now would make (one delivery per address, consent and suppression as they stand),
    and how many members the tags select and each narrowing rule then removed."""
    counts: dict[str, Any] = {}
    with Session(engine) as session:
        for channel in spec.channels:
            deliveries, by = audience_counts(session, spec, Channel(channel))
            tagged, removed = audience_filters(session, spec, Channel(channel))
            counts[str(channel)] = {
                "deliveries": deliveries,
                "excluded": sum(by.values()),
                "excluded_by": by,
                "tagged": tagged,
                "removed_by": removed,
            }
    return counts


@dataclass
class Review:
    """A draft as the console shows it while editing."""

    problems: list[str] = field(default_factory=list)  # the file's, as `validate` lists
    render: list[RenderProblem] = field(default_factory=list)  # over the varied sample
    rendered: int = 0
    counts: dict[str, Any] = field(default_factory=dict)
    sms: SmsLength | None = None  # for the sample member, footer included
    sms_parts: int | None = None  # estimate for the audience
    sms_rials: int | None = None
    samples: list[str] = field(default_factory=list)  # external ids: the preview's links
    spec: CampaignSpec | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and not self.render

    def to_json(self) -> dict[str, Any]:
        """What the draft page shows, kept with the draft when it is saved."""
        sms = self.sms
        return {
            "problems": self.problems,
            "render": [str(problem) for problem in self.render],
            "rendered": self.rendered,
            "counts": self.counts,
            "sms": None
            if sms is None
            else {"characters": sms.characters, "parts": sms.parts, "encoding": sms.encoding},
            "sms_parts": self.sms_parts,
            "sms_rials": self.sms_rials,
            "samples": self.samples,
        }


def review(engine: Engine, s: Settings, draft: Draft) -> Review:
    """Check a draft as `campaign validate` checks a file, and measure its audience."""
    spec, problems = draft.check(**load_options(s))
    found = Review(problems=problems, spec=spec)
    if spec is None:
        return found
    templates = spec.templates({"name": shop_name(s.mail_from)}, zone=s.sms_zone)
    try:
        found.counts = audience_counts_of(engine, spec)
    except DispatcherError as exc:
        found.problems.append(str(exc))
        return found
    chosen = sample.varied_sample(engine, spec)
    found.samples = [member.external_id for member in chosen[:SAMPLE_LINKS]]
    contexts = [dict(SAMPLE_MEMBER), *EDGE_MEMBERS, *(m.template_context() for m in chosen)]
    found.rendered, found.render = render_problems(
        spec, templates, contexts, url=SAMPLE_UNSUBSCRIBE_URL
    )
    if spec.sms:
        text = with_footer(templates.render_sms(dict(SAMPLE_MEMBER)), s.sms_optout_footer)
        found.sms = measure(text)
        found.sms_parts = found.sms.parts * found.counts["sms"]["deliveries"]
        if s.sms_part_rials is not None:
            found.sms_rials = found.sms_parts * s.sms_part_rials
    return found


def send_at_of(text: str, s: Settings) -> datetime | None:
    """The send time a person gave: None for `now` (or nothing); InputError for one
    that is not a time or has passed."""
    text = text.strip()
    if not text or text.lower() == NOW or text == "اکنون":
        return None
    return future_send_at(text, s.sms_zone, what="send_at")


def schedule(
    engine: Engine,
    s: Settings,
    spec: CampaignSpec,
    when: str,
    *,
    keys: AddressKeys,
    broker: Broker,
    actors: dict[str, Actor],
) -> Expansion:
    """`campaign send` without the terminal: record the campaign (scheduled for `when`,
    or sending now and enqueued); EmptyAudienceError when nobody would get it."""
    if Channel.EMAIL in spec.channels and not s.mail_from:
        raise InputError("MAIL_FROM is required to send email")
    send_at = send_at_of(when, s)
    result = expand(engine, spec, send_at=send_at, allow_empty=False, keys=keys)
    if result.created and send_at is None:
        enqueue_pending(engine, broker, result.campaign, actors)
    return result


# -- the SMS parts of an audience --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudienceParts:
    """What an SMS campaign costs: members it goes to and SMS parts in all."""

    members: int
    parts: int


def audience_parts(
    engine: Engine,
    templates: CampaignTemplates,
    *,
    footer: str,
    audience: Audience | list[str] | None,
    batch: int = 1000,
    track: Callable[[str], str] | None = None,
) -> AudienceParts:
    """Render the SMS for every member it would go to now, and add up the parts.

    Exact (names differ in length, and one letter can add a part), and streamed, so
    memory stays flat whatever the audience size.
    """
    members = parts = 0
    with Session(engine) as session:
        excluded: list[int] = []
        if isinstance(audience, Audience):
            excluded = campaign_ids(session, audience.exclude_campaigns)
        query = (
            select(Member)
            .where(recipients(Channel.SMS, audience, excluded))
            .order_by(Member.id)  # type: ignore[arg-type]
            .execution_options(yield_per=batch)
        )
        for member in session.execute(query).scalars():
            body = templates.render_sms(member.template_context())
            text = with_footer(track(body) if track else body, footer)
            members += 1
            parts += measure(text).parts
    return AudienceParts(members=members, parts=parts)
