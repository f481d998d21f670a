"""What a process needs to send, built once from the settings: the process's context.

Actors call `get_runtime()`; the CLI and tests build one explicitly with
`Runtime.from_settings(...)` and install it with `set_runtime(...)`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine

from dispatcher.aio import LoopThread
from dispatcher.audience.clicktoken import ClickSigner
from dispatcher.audience.tokens import TokenSigner
from dispatcher.compose import compile_templates
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.rendering import CampaignTemplates, shop_name
from dispatcher.delivery.groupcommit import GroupCommit
from dispatcher.delivery.guard import SendGuard, build_guard
from dispatcher.delivery.tracking import LinkTracker
from dispatcher.email.mime import MessageHeaders
from dispatcher.email.transport import EmailTransport
from dispatcher.settings import Settings, get_settings
from dispatcher.sms.transport import SmsTransport
from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, Channel, utcnow


@dataclass
class CompiledCampaign:
    """A campaign's templates and headers, prepared once per process."""

    id: int
    slug: str
    spec: CampaignSpec
    templates: CampaignTemplates
    headers: MessageHeaders | None


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    signer: TokenSigner
    _email_transport: EmailTransport | None = None
    _loop: LoopThread | None = None
    _campaigns: OrderedDict[int, CompiledCampaign] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sms_transport: SmsTransport | None = None
    _guards: dict[str, SendGuard] = field(default_factory=dict)
    _deliveries: GroupCommit | None = None
    _links: LinkTracker | None = None
    # The time now (aware, UTC): tests replace it to be "at 23:00 in Tehran".
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            engine=make_engine(settings.database_url),
            signer=TokenSigner(settings.unsubscribe_keys()),
        )

    @property
    def loop(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
            return self._loop

    @property
    def deliveries(self) -> GroupCommit:
        """The delivery state machine of `dispatcher.delivery.state`, batched across threads."""
        with self._lock:
            if self._deliveries is None:
                self._deliveries = GroupCommit(self.engine)
            return self._deliveries

    @property
    def email_transport(self) -> EmailTransport:
        with self._lock:
            if self._email_transport is None:
                self._email_transport = build_email_transport(self.settings)
            return self._email_transport

    @property
    def sms_transport(self) -> SmsTransport:
        with self._lock:
            if self._sms_transport is None:
                self._sms_transport = build_sms_transport(self.settings, pace=self._pace_kavenegar)
            return self._sms_transport

    def _pace_kavenegar(self) -> None:
        """One slot of KAVENEGAR_RATE_LIMIT, for one call of the SMS sender thread (the
        guard is looked up at each call: built once, after the transport)."""
        self.guard("kavenegar").before_send()

    def guard(self, transport: str) -> SendGuard:
        """The shared rate and error-storm counter of "smtp" or "kavenegar" (built once)."""
        with self._lock:
            if transport not in self._guards:
                self._guards[transport] = build_guard(self.settings, transport)
            return self._guards[transport]

    def shop(self) -> dict[str, str]:
        return {"name": shop_name(self.settings.mail_from)}

    def compiled_if_cached(self, campaign: Campaign) -> CompiledCampaign | None:
        """The campaign's compiled templates if this process has them, without waiting."""
        with self._lock:
            return self._campaigns.get(campaign.id)  # type: ignore[arg-type]

    def compiled(self, campaign: Campaign) -> CompiledCampaign:
        """The campaign's compiled templates, cached (a few campaigns per process)."""
        assert campaign.id is not None
        with self._lock:
            hit = self._campaigns.get(campaign.id)
            if hit is not None:
                self._campaigns.move_to_end(campaign.id)
                return hit
        # A campaign loaded in a batch has its `spec` deferred: read it now, once.
        frozen = campaign.__dict__.get("spec")
        if frozen is None:
            table = Campaign.__table__  # type: ignore[attr-defined]
            with self.engine.connect() as conn:
                frozen = conn.execute(
                    select(table.c.spec).where(table.c.id == campaign.id)
                ).scalar_one()
        spec = CampaignSpec.from_json(frozen)
        headers = None
        if self.settings.mail_from:
            headers = MessageHeaders.for_campaign(
                mail_from=(spec.email and spec.email.from_addr) or self.settings.mail_from,
                slug=spec.slug,
                campaign_name=spec.name,
                reply_to=spec.email.reply_to if spec.email else None,
                key=self.settings.suppression_key_bytes(),
            )
        compiled = CompiledCampaign(
            id=campaign.id,
            slug=campaign.slug,
            spec=spec,
            templates=compile_templates(spec, self.settings),
            headers=headers,
        )
        with self._lock:
            self._campaigns[campaign.id] = compiled
            while len(self._campaigns) > 16:
                self._campaigns.popitem(last=False)
        return compiled

    @property
    def links(self) -> LinkTracker:
        """Click links for rendered messages (`dispatcher.delivery.tracking`)."""
        with self._lock:
            if self._links is None:
                signer = ClickSigner(self.settings.unsubscribe_keys())
                self._links = LinkTracker(signer, self.settings.unsubscribe_base_url)
            return self._links

    def unsubscribe_url(self, member_id: int, channel: str, campaign_id: int | None = None) -> str:
        token = self.signer.sign(member_id, Channel(channel), campaign_id)
        return f"{self.settings.unsubscribe_base_url}/u/{token}"

    def view_url(self, member_id: int, campaign_id: int) -> str:
        """The web copy of a campaign's email to a member (`GET /v/{token}`)."""
        token = self.signer.sign_view(member_id, campaign_id)
        return f"{self.settings.unsubscribe_base_url}/v/{token}"

    def close(self) -> None:
        if self._deliveries is not None:
            self._deliveries.close()
            self._deliveries = None
        if self._loop is not None:
            if self._email_transport is not None:
                self._loop.run(self._email_transport.close(), timeout=10)
            self._loop.stop()
            self._loop = None
        self._email_transport = None
        if self._sms_transport is not None:
            self._sms_transport.close()
            self._sms_transport = None
        self.engine.dispose()


def build_email_transport(settings: Settings) -> EmailTransport:
    """SMTP when SMTP_HOST is set, otherwise the outbox folder. (The transports are
    imported here: a process that sends nothing, `campaign send` say, never loads them.)"""
    if settings.outbox:
        from dispatcher.email.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir / "email")
    from dispatcher.email.smtp import SmtpTransport

    return SmtpTransport.from_settings(settings)


def build_sms_transport(
    settings: Settings, *, pace: Callable[[], None] | None = None
) -> SmsTransport:
    """Kavenegar when KAVENEGAR_API_KEY is set, otherwise the outbox folder. With
    `pace` (a slot of KAVENEGAR_RATE_LIMIT), Kavenegar's sends of all the threads go
    through one sender thread, up to KAVENEGAR_BATCH messages per call, one slot each."""
    if settings.kavenegar_api_key is None:
        from dispatcher.sms.outbox import SmsOutbox

        return SmsOutbox(settings.outbox_dir / "sms")
    from dispatcher.sms.kavenegar import KavenegarTransport

    transport = KavenegarTransport.from_settings(settings)
    if pace is None:
        return transport
    from dispatcher.sms.batch import KavenegarBatcher

    return KavenegarBatcher(transport, pace=pace, max_batch=settings.kavenegar_batch)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_settings(get_settings())
        return _runtime


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Install a runtime (the CLI and tests do); returns the previous one."""
    global _runtime
    with _runtime_lock:
        previous, _runtime = _runtime, runtime
        return previous
