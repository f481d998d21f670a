"""The database schema: members and their consent, campaigns, deliveries.

The database is the truth. Redis only ever carries `Delivery.id`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class AbDecidedBy(StrEnum):
    """How an A/B test's winner was chosen (`Campaign.ab_decided_by`)."""

    CLICKS = "clicks"
    MANUAL = "manual"
    NO_CLEAR_WINNER = "no clear winner"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class FailureKind(StrEnum):
    """Why a delivery failed for good (`Delivery.failure_kind`)."""

    RETRIES_EXHAUSTED = "retries-exhausted"  # transient failures used up the retries
    PERMANENT = "permanent"  # the provider refused the message for good
    INVALID_RECIPIENT = "invalid-recipient"  # the provider says the address is no good
    RENDER = "render"  # the campaign's template could not make the message


class CampaignState(StrEnum):
    """draft -> scheduled -> sending -> done; sending <-> paused; any but done -> cancelled.

    A draft is a campaign being written in the console: its form in `Campaign.spec`
    (`{"draft": {...}}`), no deliveries; scheduling it makes it a campaign like any other."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


class PausedBy(StrEnum):
    """Who or what paused a campaign (`Campaign.paused_by`)."""

    PERSON = "person"
    NO_CREDIT = "no-credit"
    ERROR_STORM = "error-storm"


class ConsentSource(StrEnum):
    """Who changed a member's consent. Everything but IMPORT is sticky."""

    IMPORT = "import"
    LINK = "link"
    ONE_CLICK = "one-click"
    SMS_KEYWORD = "sms-keyword"
    PROVIDER = "provider"
    CLI = "cli"
    API = "api"  # the shop's private API (`PATCH /api/v1/members/{id}/consent`)
    BOUNCE = "bounce"  # a hard bounce, or three soft ones (`dispatcher.feedback.bounces`)
    COMPLAINT = "complaint"  # an ARF report from a mailbox provider's feedback loop
    CONSOLE = "console"  # staff in the marketer's console (`dispatcher.console`)


class SuppressionReason(StrEnum):
    """Why an address is suppressed on a channel (`Suppression.reason`)."""

    OPTOUT = "optout"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


class Member(SQLModel, table=True):
    # An erased member's id is never given to another member (an old unsubscribe link
    # names the id): SQLite would reuse the largest id without AUTOINCREMENT.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(index=True, unique=True, max_length=64)
    first_name: str = ""
    last_name: str = ""
    email: str | None = Field(default=None, max_length=320)
    mobile: str | None = Field(default=None, max_length=20)
    email_opt_in: bool = True
    sms_opt_in: bool = True
    # Set when the member opted out through the dispatcher (link, keyword, provider):
    # an import cannot undo it; only `members subscribe` can.
    email_optout_source: str | None = None
    sms_optout_source: str | None = None
    mobile_invalid: bool = False
    # Hex HMAC-SHA256 of the normalised address (`dispatcher.audience.addresses`): what
    # expansion groups by (one delivery per address) and `suppression` is keyed by.
    email_key: str | None = Field(default=None, max_length=64, index=True)
    mobile_key: str | None = Field(default=None, max_length=64, index=True)
    tags: str = ""  # ';'-joined, for display; MemberTag is what audiences query
    updated_at: datetime = Field(default_factory=utcnow)

    def template_context(self) -> dict[str, Any]:
        return {
            "external_id": self.external_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email or "",
            "mobile": self.mobile or "",
            "tags": [t for t in self.tags.split(";") if t],
        }


class MemberTag(SQLModel, table=True):
    __tablename__ = "member_tag"
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    tag: str = Field(primary_key=True, index=True, max_length=64)


class ConsentEvent(SQLModel, table=True):
    """An opt-out or opt-in, when and how: the shop mirrors these into its profiles.

    `member_id` is None once the member was erased: the event stays, anonymous.
    """

    __tablename__ = "consent_event"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    channel: str = Field(max_length=8)
    opted_in: bool
    source: str = Field(max_length=16)
    at: datetime = Field(default_factory=utcnow, index=True)
    # The campaign whose unsubscribe link (or token) it came through, when known.
    campaign_id: int | None = Field(default=None, index=True)


class InboxOptOut(SQLModel, table=True):
    """An opt-out reply fetched from Kavenegar and not recorded yet: its sender only.

    Written in a transaction of its own before the opt-out is applied, deleted in the
    transaction that applies it (`dispatcher.feedback.inbox`)."""

    __tablename__ = "sms_inbox_spool"
    id: int | None = Field(default=None, primary_key=True)
    sender: str = Field(max_length=64)
    received_at: datetime = Field(default_factory=utcnow)


class Suppression(SQLModel, table=True):
    """An address that gets nothing more on a channel; it outlives the member's record.

    Keyed by the HMAC of the normalised address (`SUPPRESSION_KEY`), never the address.
    """

    __table_args__ = (UniqueConstraint("address_key", "channel", name="uq_suppression"),)
    id: int | None = Field(default=None, primary_key=True)
    address_key: str = Field(max_length=64)
    channel: str = Field(max_length=8)
    reason: str = Field(max_length=16)  # a SuppressionReason value
    source: str = Field(max_length=16)  # a ConsentSource value
    created_at: datetime = Field(default_factory=utcnow)


class Bounce(SQLModel, table=True):
    """A bounce or complaint about an email address: at send time, or read from a report.

    `report_id` is unique, so handling the same report (or delivery failure) twice
    records it once.
    """

    id: int | None = Field(default=None, primary_key=True)
    address_key: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # a BounceKind value
    campaign_id: int | None = Field(default=None, index=True)
    delivery_id: int | None = None
    status: str | None = Field(default=None, max_length=16)  # enhanced code, e.g. 5.1.1
    report_id: str = Field(max_length=80, unique=True)
    at: datetime = Field(default_factory=utcnow, index=True)


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(index=True, unique=True, max_length=128)
    name: str
    channels: str  # comma-joined Channel values
    state: str = Field(default=CampaignState.SENDING, max_length=16)
    # The parsed campaign file and its template sources, frozen at send time so that
    # every worker renders the same thing wherever it runs.
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # {channel: n, "excluded_by": {channel: {opted_out, no_address, ...}}} at expansion
    excluded: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    # Scheduling and control (`dispatcher.delivery.control`, `dispatcher.scheduler`).
    # `send_at`: when the scheduler may launch it (UTC, like every time here).
    send_at: datetime | None = Field(default=None, index=True)
    launched_at: datetime | None = None
    paused_by: str | None = Field(default=None, max_length=16)  # a PausedBy value
    pause_reason: str | None = Field(default=None, max_length=500)
    paused_at: datetime | None = None
    cancel_reason: str | None = Field(default=None, max_length=500)
    cancelled_at: datetime | None = None
    # An `[ab]` test (`dispatcher.queue.abtest`): None (no test), "testing" (the rest
    # of the email audience waits), "decided" (`ab_winner` goes to the rest).
    ab_state: str | None = Field(default=None, max_length=8)
    ab_winner: str | None = Field(default=None, max_length=1)
    ab_decided_by: str | None = Field(default=None, max_length=16)  # an AbDecidedBy value
    ab_p_value: float | None = None
    ab_decided_at: datetime | None = None

    def channel_list(self) -> list[Channel]:
        return [Channel(c) for c in self.channels.split(",") if c]


class CampaignHold(SQLModel, table=True):
    """A channel's own hold on a campaign's deliveries (`dispatcher.hold`): the
    deliveries stay pending while either is set. A row with neither holds nothing."""

    __tablename__ = "campaign_hold"
    campaign_id: int = Field(foreign_key="campaign.id", primary_key=True)
    channel: str = Field(max_length=8, primary_key=True)
    # Why the channel stopped (Kavenegar 418 no credit, 401/403 account or key):
    # nothing more is sent until a resume clears it. None: not paused.
    reason: str | None = Field(default=None, max_length=500)
    # Set when a message came due outside the channel's send window: the next opening
    # (UTC). The pending deliveries are re-enqueued once the window is open.
    waiting_until: datetime | None = None


class Delivery(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("campaign_id", "member_id", "channel", name="uq_delivery"),
        # Ends with the id: `enqueue_pending` reads pending ids in order, a chunk at a time.
        Index("ix_delivery_campaign_status", "campaign_id", "channel", "status", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    # Loose keys (no FOREIGN KEY: migration 0013): a campaign's and a member's ids,
    # written only by expansion and kept true by erasure and `--reuse-slug`.
    campaign_id: int
    # None once the member was erased: the row stays, anonymous, for the campaign's counts.
    member_id: int | None = Field(default=None, index=True)
    channel: str = Field(max_length=8)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=8)
    attempts: int = 0
    error_code: int | None = None
    error_message: str | None = Field(default=None, max_length=500)
    # Set with `failed`: why it failed for good (a FailureKind value); None otherwise.
    failure_kind: str | None = Field(default=None, max_length=24)
    provider_id: str | None = Field(default=None, max_length=255)
    cost: int | None = None
    # The provider's last known status of a sent message (Kavenegar: 1 queued,
    # 4/5 at the operator, 10 delivered, 11 undelivered, 6 failed, 13 cancelled,
    # 14 blocked by the recipient). None until the provider says something.
    provider_status: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    # When it was handed over (set by the actors with `sent`): the report's first/last
    # send and rate. `sms_parts`: the SMS's parts as sent (Kavenegar bills per part).
    sent_at: datetime | None = None
    sms_parts: int | None = None
    # The A/B variant ("A".."D") of an `[ab]` campaign's email; None: no test, or
    # waiting for the winner.
    variant: str | None = Field(default=None, max_length=1)


class DeliveryCount(SQLModel, table=True):
    """How many of a campaign's deliveries of a channel are in each status, and for the
    outcomes (sent, failed, skipped) in each minute they came to it (`minute`: minutes
    since 1970 UTC of the report's moment, `sent_at` or else `updated_at`; 0 for pending
    and sending), with the first and last such moment. Kept by every move of
    `dispatcher.delivery.state` in the transaction that makes it, so progress and the
    report's chart are read without counting deliveries."""

    __tablename__ = "delivery_count"
    campaign_id: int = Field(primary_key=True)
    channel: str = Field(primary_key=True, max_length=8)
    status: str = Field(primary_key=True, max_length=8)
    minute: int = Field(default=0, primary_key=True)
    n: int = 0
    first: datetime | None = None
    last: datetime | None = None


class ClickCount(SQLModel, table=True):
    """Clicks on a campaign's link (`link`: its index; -1: any link, for the unique
    clickers of the variant), per channel, variant ("" without a test) and minute.

    Nothing about who clicked: no member, address, IP or user agent."""

    __tablename__ = "click_count"
    __table_args__ = (
        UniqueConstraint("campaign_id", "channel", "variant", "link", "minute", name="uq_click"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(index=True)
    channel: str = Field(max_length=8)
    variant: str = Field(default="", max_length=1)
    link: int
    minute: datetime
    clicks: int = 0
    unique_clicks: int = 0
    scanner: int = 0


class ClickSeen(SQLModel, table=True):
    """A keyed hash of (campaign, delivery, link) that clicked once already: how unique
    clickers are counted once. Deleted CLICK_DEDUPE_DAYS after the campaign finished."""

    __tablename__ = "click_seen"
    hash: str = Field(primary_key=True, max_length=32)
    campaign_id: int = Field(index=True)


class ApiKey(SQLModel, table=True):
    """A key of the shop's private API: only its SHA-256 is stored, never the key."""

    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    key_hash: str = Field(index=True, unique=True, max_length=64)  # hex SHA-256
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class StaffRole(StrEnum):
    """What a console account may do: each role can do everything of the one before."""

    VIEWER = "viewer"
    MARKETER = "marketer"
    ADMIN = "admin"


class Staff(SQLModel, table=True):
    """An account of the marketer's console: its argon2 hash only, never the password."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=64)
    role: str = Field(max_length=16)  # a StaffRole value
    password_hash: str = Field(max_length=255)
    failed_logins: int = 0
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class StaffSession(SQLModel, table=True):
    """A signed-in console session, server-side: the cookie carries the token, the table
    its SHA-256. Ended by logout (deleted) or after the idle time."""

    __tablename__ = "staff_session"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """One change made in the console or by `dispatcher staff`: who, what, on which
    campaign or member (ids), when, from which address."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=64)  # the staff name (or `cli` for the command line)
    action: str = Field(max_length=64)
    campaign_id: int | None = None
    member_id: int | None = None
    detail: str = Field(default="", max_length=500)
    address: str | None = Field(default=None, max_length=64)
