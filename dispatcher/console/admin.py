"""For an admin: the audit log and the suppression list (counts by reason and channel,
recent bounces and complaints per campaign, and lifting one suppression)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from dispatcher.audience.normalise import normalise_email, normalise_mobile, to_ascii_digits
from dispatcher.audience.suppression import lift as lift_suppression
from dispatcher.console.auth import Ctx, page
from dispatcher.store import audit
from dispatcher.store.models import Bounce, Campaign, Channel, StaffRole, Suppression

AUDIT_ROWS = 200
RECENT = 50


@page(StaffRole.ADMIN)
async def audit_log(ctx: Ctx) -> Response:
    rows = await run_in_threadpool(lambda: audit.events(ctx.console.engine, limit=AUDIT_ROWS))
    return ctx.page("audit.html", rows=rows)


def summary(engine: Engine) -> dict[str, Any]:
    """Suppressions by reason and channel; bounces and complaints per campaign and kind;
    the most recent ones."""
    with engine.connect() as conn:
        by_reason = conn.execute(
            select(col(Suppression.reason), col(Suppression.channel), func.count())
            .group_by(col(Suppression.reason), col(Suppression.channel))
            .order_by(col(Suppression.reason), col(Suppression.channel))
        ).all()
        per_campaign = conn.execute(
            select(col(Campaign.slug), col(Bounce.kind), func.count())
            .join(Campaign, col(Campaign.id) == col(Bounce.campaign_id))
            .group_by(col(Campaign.slug), col(Bounce.kind))
            .order_by(col(Campaign.slug))
        ).all()
        recent = conn.execute(
            select(col(Bounce.at), col(Bounce.kind), col(Bounce.status), col(Campaign.slug))
            .outerjoin(Campaign, col(Campaign.id) == col(Bounce.campaign_id))
            .order_by(col(Bounce.id).desc())
            .limit(RECENT)
        ).all()
    return {"by_reason": by_reason, "per_campaign": per_campaign, "recent": recent}


@page(StaffRole.VIEWER)
async def suppressions(ctx: Ctx) -> Response:
    found = await run_in_threadpool(summary, ctx.console.engine)
    return ctx.page("suppressions.html", **found)


def _lift(ctx: Ctx, channel: Channel, address: str) -> bool:
    normal = normalise_email(address) if channel is Channel.EMAIL else normalise_mobile(address)
    key = ctx.console.keys.of(channel, normal)
    assert key is not None
    with ctx.console.engine.begin() as conn:
        return lift_suppression(conn, key, channel)


@page(StaffRole.ADMIN)
async def lift(ctx: Ctx) -> Response:
    """`POST /suppressions/lift` (channel, address): the address may be sent to again."""
    channel, address = ctx.field("channel"), to_ascii_digits(ctx.field("address").strip())
    if channel not in ("email", "sms") or not address:
        message = "کانال و نشانی را بنویسید."
    else:
        try:
            lifted = await run_in_threadpool(_lift, ctx, Channel(channel), address)
        except ValueError as exc:
            lifted, message = False, str(exc)
        else:
            message = "مسدودی برداشته شد." if lifted else "این نشانی مسدود نبود."
        if lifted:
            await ctx.audit("suppression-lift", detail=f"{channel}")
    return ctx.done("/suppressions", message)
