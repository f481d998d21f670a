"""`GET /v/{token}`: a member's copy of a campaign's email, as a web page.

Read-only: the campaign's frozen templates (compiled once per campaign, a few kept)
rendered for the member as they are now, with the same unsubscribe link the email
had. Works for as long as the campaign and the member exist, done or not.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dispatcher.audience.tokens import TokenClaims, TokenSigner
from dispatcher.compose import compile_templates, compose_email
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.rendering import CampaignTemplates
from dispatcher.errors import NotFoundError
from dispatcher.settings import Settings
from dispatcher.store.models import Campaign, Channel, Member

KEPT = 16  # compiled campaigns kept in memory


class Copies:
    """Renders web copies; one per server process."""

    def __init__(self, engine: Engine, signer: TokenSigner, settings: Settings) -> None:
        self.engine = engine
        self.signer = signer
        self.base_url = settings.unsubscribe_base_url
        self.settings = settings
        self._compiled: OrderedDict[int, CampaignTemplates] = OrderedDict()
        self._lock = threading.Lock()

    def render(self, claims: TokenClaims) -> str:
        """The HTML of the member's copy; NotFoundError when either is gone."""
        with Session(self.engine) as session:
            member = session.get(Member, claims.member_id)
            campaign = session.get(Campaign, claims.campaign_id) if claims.campaign_id else None
        if member is None or member.id is None or campaign is None or campaign.id is None:
            raise NotFoundError("no such copy")  # the same 400 page as a forged token
        if Channel.EMAIL not in campaign.channel_list():
            raise NotFoundError("no such copy")
        token = self.signer.sign(member.id, Channel.EMAIL, campaign.id)
        unsubscribe = f"{self.base_url}/u/{token}"
        templates = self._templates(campaign)
        return compose_email(
            templates, member.template_context(), unsubscribe_url=unsubscribe, view_url=None
        ).html

    def _templates(self, campaign: Campaign) -> CampaignTemplates:
        assert campaign.id is not None
        with self._lock:
            hit = self._compiled.get(campaign.id)
            if hit is not None:
                self._compiled.move_to_end(campaign.id)
                return hit
        compiled = compile_templates(CampaignSpec.from_json(campaign.spec), self.settings)
        with self._lock:
            self._compiled[campaign.id] = compiled
            while len(self._compiled) > KEPT:
                self._compiled.popitem(last=False)
        return compiled
