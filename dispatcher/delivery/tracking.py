"""Link tracking at send time: a member's rendered message with the campaign's links
swapped for click links (`{UNSUBSCRIBE_BASE_URL}/c/{token}`), by the pure functions
of `dispatcher.definition.links`.
"""

from __future__ import annotations

from dataclasses import replace

from dispatcher.audience.clicktoken import ClickSigner, click_url
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.links import UrlFor, rewrite_html, rewrite_text
from dispatcher.definition.rendering import RenderedEmail


def spec_index(spec: CampaignSpec) -> dict[str, int]:
    """The campaign's links -> their index (the order the click tokens name them by)."""
    return spec.link_index()


def spec_links(spec: CampaignSpec) -> list[str]:
    """The campaign's links in index order (what `/c/{token}` redirects to)."""
    return list(spec_index(spec))


class LinkTracker:
    """Makes click links for one process, from the unsubscribe keys and base URL."""

    def __init__(self, signer: ClickSigner, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url

    def url_for(
        self, campaign_id: int, delivery_id: int, variant: str | None, *, short: bool = False
    ) -> UrlFor:
        made: dict[int, str] = {}  # a link in both the HTML and the text: signed once

        def url(link: int) -> str:
            hit = made.get(link)
            if hit is None:
                token = self.signer.sign(campaign_id, link, variant, delivery_id, short=short)
                hit = made[link] = click_url(self.base_url, token)
            return hit

        return url

    def email(
        self,
        rendered: RenderedEmail,
        spec: CampaignSpec,
        campaign_id: int,
        delivery_id: int,
        variant: str | None = None,
    ) -> RenderedEmail:
        """The HTML and text parts with the links rewritten (`[tracking] clicks`)."""
        if not spec.track_clicks:
            return rendered
        index = spec_index(spec)
        url_for = self.url_for(campaign_id, delivery_id, variant)
        return replace(
            rendered,
            html=rewrite_html(rendered.html, index, url_for),
            text=rewrite_text(rendered.text, index, url_for),
        )

    def sms(self, text: str, spec: CampaignSpec, campaign_id: int, delivery_id: int) -> str:
        """An SMS with its links rewritten, short tokens (`[sms] track_links`)."""
        if not spec.sms_track_links:
            return text
        url_for = self.url_for(campaign_id, delivery_id, None, short=True)
        return rewrite_text(text, spec_index(spec), url_for)
