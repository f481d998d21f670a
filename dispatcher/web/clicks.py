"""`GET /c/{token}`: a click on a campaign's link, counted and redirected.

The URL comes from the campaign (its links, in the order the token's index names
them; read once per campaign per process), never from the request. A click is kept
in memory and written with the others of the last CLICK_FLUSH_INTERVAL in one
transaction (`dispatcher.delivery.clicks.record_clicks`), and at shutdown; the
request path never waits for the database once the campaign's links are known.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col

from dispatcher.audience.clicktoken import Click, ClickSigner
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.delivery.clicks import ClickEvent, is_scanner_agent, record_clicks
from dispatcher.delivery.tracking import spec_links
from dispatcher.store.models import Campaign, Channel

log = logging.getLogger("dispatcher.web.clicks")

KEPT = 256  # campaigns whose links are kept in memory
MAX_BUFFER = 1_000_000  # clicks kept while the database does not answer; older go


class Clicks:
    """The click counter of one server process."""

    def __init__(
        self, engine: Engine, signer: ClickSigner, *, dedupe_key: bytes, scanner_seconds: float
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.dedupe_key = dedupe_key
        self.scanner_seconds = scanner_seconds
        self._links: OrderedDict[int, list[str] | None] = OrderedDict()
        self._buffer: list[ClickEvent] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def cached_links(self, campaign_id: int) -> tuple[bool, list[str] | None]:
        """(known, links): the campaign's links if this process has read them."""
        with self._lock:
            if campaign_id in self._links:
                return True, self._links[campaign_id]
            return False, None

    def load_links(self, campaign_id: int) -> list[str] | None:
        """The campaign's links, read from the database (blocking); None: no campaign."""
        with self.engine.connect() as conn:
            frozen = conn.execute(
                select(Campaign.spec).where(col(Campaign.id) == campaign_id)  # type: ignore[call-overload]
            ).scalar()
        links = spec_links(CampaignSpec.from_json(frozen)) if frozen else None
        with self._lock:
            self._links[campaign_id] = links
            while len(self._links) > KEPT:
                self._links.popitem(last=False)
        return links

    def count(self, click: Click, at: datetime, user_agent: str) -> None:
        """Keep one click for the next batch (no database call)."""
        event = ClickEvent(
            campaign_id=click.campaign_id,
            channel=str(Channel.SMS if click.short else Channel.EMAIL),
            variant=click.variant,
            link=click.link,
            delivery_id=click.delivery_id,
            at=at,
            scanner_agent=is_scanner_agent(user_agent),
        )
        with self._lock:
            self._buffer.append(event)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> int:
        """Write the kept clicks in one transaction (blocking); how many. On a database
        error they are kept for the next flush, and the error raised."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        try:
            record_clicks(
                self.engine,
                batch,
                dedupe_key=self.dedupe_key,
                scanner_seconds=self.scanner_seconds,
            )
        except SQLAlchemyError:
            with self._lock:
                self._buffer[:0] = batch
                over = len(self._buffer) - MAX_BUFFER
                if over > 0:
                    del self._buffer[:over]
                    self.dropped += over
            raise
        return len(batch)
