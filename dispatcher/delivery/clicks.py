"""Click counts: a batch of clicks written in one transaction, and the purge of the
unique clickers' hashes.

A click is counted as `scanner` when it came within CLICK_SCANNER_SECONDS of the
delivery's send (or before the send was recorded) or from a known link scanner's user
agent; otherwise as a click, and as a unique click the first time its delivery
clicked that link (and, for the variant's unique clickers, any link: `link = -1`),
told by a keyed hash kept in `click_seen`. Times are kept to the minute.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from dispatcher.audience.clicktoken import clicker_hash
from dispatcher.store.db import insert_or_ignore
from dispatcher.store.models import Campaign, CampaignState, ClickCount, ClickSeen, Delivery

CHUNK = 4000  # rows per statement (SQLite allows 32,766 bound parameters)
ANY_LINK = -1  # the `link` of the rows counting a variant's unique clickers
# Substrings (lowercase) of the user agents of mail security scanners and link
# previewers, which open every link of a message to check it.
SCANNER_AGENTS = (
    "barracuda",
    "proofpoint",
    "urldefense",
    "mimecast",
    "safelinks",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "cloudmark",
    "fireeye",
    "sophos",
    "zscaler",
    "bot",
    "spider",
    "crawler",
    "preview",
    "headless",
    "curl/",
    "wget",
    "python-requests",
    "go-http-client",
)
_Key = tuple[int, str, str, int, datetime]  # campaign, channel, variant, link, minute
_COUNTS = ClickCount.__table__  # type: ignore[attr-defined]
_SEEN = ClickSeen.__table__  # type: ignore[attr-defined]
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]


def is_scanner_agent(user_agent: str) -> bool:
    """Whether a user agent is a known link scanner (an empty one is too)."""
    agent = user_agent.lower()
    return not agent.strip() or any(name in agent for name in SCANNER_AGENTS)


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """One GET of `/c/{token}`, as the server keeps it until the next batch."""

    campaign_id: int
    channel: str
    variant: str | None
    link: int
    delivery_id: int
    at: datetime  # aware UTC, to the second: only compared, never stored so
    scanner_agent: bool = False


def _minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def record_clicks(
    engine: Engine, events: list[ClickEvent], *, dedupe_key: bytes, scanner_seconds: float
) -> None:
    """Count a batch of clicks: one transaction, a few statements whatever its size."""
    if not events:
        return
    with engine.begin() as conn:
        sent = _sent_at(conn, {e.delivery_id for e in events})
        window = timedelta(seconds=scanner_seconds)
        people: list[ClickEvent] = []
        counts: dict[_Key, list[int]] = defaultdict(lambda: [0, 0, 0])
        for e in events:
            row = (e.campaign_id, e.channel, e.variant or "", e.link, _minute(e.at))
            at_send = sent.get(e.delivery_id)
            if e.scanner_agent or at_send is None or e.at - at_send < window:
                counts[row][2] += 1
            else:
                counts[row][0] += 1
                people.append(e)
        new = _first_seen(conn, people, dedupe_key)
        for e in people:
            minute = _minute(e.at)
            for link in (e.link, ANY_LINK):
                digest = clicker_hash(dedupe_key, e.campaign_id, e.delivery_id, _of(link))
                if digest in new:
                    new.discard(digest)
                    counts[(e.campaign_id, e.channel, e.variant or "", link, minute)][1] += 1
        _add_counts(conn, counts)


def _of(link: int) -> int | None:
    return None if link == ANY_LINK else link


def _sent_at(conn: Connection, ids: set[int]) -> dict[int, datetime]:
    rows = conn.execute(
        select(_DELIVERY.c.id, _DELIVERY.c.sent_at).where(
            _DELIVERY.c.id.in_(list(ids)), _DELIVERY.c.sent_at.is_not(None)
        )
    )
    return {i: at for i, sent in rows if (at := _aware(sent)) is not None}


def _first_seen(conn: Connection, people: list[ClickEvent], key: bytes) -> set[str]:
    """The hashes of `people`'s (delivery, link) and (delivery, any link) never seen
    before: inserted now, each by exactly one batch whatever runs beside it."""
    rows: dict[str, int] = {}
    for e in people:
        for link in (e.link, None):
            rows[clicker_hash(key, e.campaign_id, e.delivery_id, link)] = e.campaign_id
    found: set[str] = set()
    values = [{"hash": h, "campaign_id": c} for h, c in rows.items()]
    for start in range(0, len(values), CHUNK):
        stmt = insert_or_ignore(conn, _SEEN).values(values[start : start + CHUNK])
        stmt = stmt.on_conflict_do_nothing(index_elements=["hash"]).returning(_SEEN.c.hash)
        found.update(conn.execute(stmt).scalars())
    return found


def _add_counts(conn: Connection, counts: dict[_Key, list[int]]) -> None:
    rows = [
        {
            "campaign_id": c,
            "channel": ch,
            "variant": v,
            "link": link,
            "minute": minute,
            "clicks": n[0],
            "unique_clicks": n[1],
            "scanner": n[2],
        }
        for (c, ch, v, link, minute), n in sorted(counts.items(), key=lambda kv: kv[0])
        if any(n)
    ]
    for start in range(0, len(rows), CHUNK // 4):  # in key order: no deadlock between batches
        stmt = insert_or_ignore(conn, _COUNTS).values(rows[start : start + CHUNK // 4])
        stmt = stmt.on_conflict_do_update(
            index_elements=["campaign_id", "channel", "variant", "link", "minute"],
            set_={
                "clicks": _COUNTS.c.clicks + stmt.excluded.clicks,
                "unique_clicks": _COUNTS.c.unique_clicks + stmt.excluded.unique_clicks,
                "scanner": _COUNTS.c.scanner + stmt.excluded.scanner,
            },
        )
        conn.execute(stmt)


def purge_seen(engine: Engine, *, days: int, now: datetime) -> int:
    """Delete the unique clickers' hashes of campaigns finished (or cancelled) more than
    `days` ago; how many went."""
    before = now - timedelta(days=days)
    finished = select(col(Campaign.id)).where(
        or_(
            (col(Campaign.state) == CampaignState.DONE) & (col(Campaign.finished_at) < before),
            (col(Campaign.state) == CampaignState.CANCELLED)
            & (col(Campaign.cancelled_at) < before),
        )
    )
    with engine.begin() as conn:
        result = conn.execute(delete(_SEEN).where(_SEEN.c.campaign_id.in_(finished)))
        return int(result.rowcount or 0)
