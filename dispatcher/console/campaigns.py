"""Campaigns: the list, one campaign's progress and report, and its controls (pause,
resume, cancel, retry-failed), each the function `dispatcher campaign ...` calls."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from dispatcher.console.auth import Ctx, page
from dispatcher.console.view import HEADERS, STATES
from dispatcher.definition.campaign import CampaignSpec
from dispatcher.definition.draft import Draft
from dispatcher.delivery import control
from dispatcher.delivery.listing import campaign_page
from dispatcher.delivery.report import RECIPIENT_COLUMNS, campaign_report, unsent_recipients
from dispatcher.delivery.status import STATUSES, campaign_status
from dispatcher.delivery.status import progress as progress_of
from dispatcher.errors import DispatcherError, NotFoundError
from dispatcher.spreadsheet import write_csv
from dispatcher.store.models import Campaign, CampaignState, Channel, PausedBy, StaffRole

PER_PAGE = 50


def _done(ctx: Ctx, slug: str, message: str) -> Response:
    return ctx.done(f"/campaigns/{quote(slug)}", message)


@page(StaffRole.VIEWER)
async def listing(ctx: Ctx) -> Response:
    state = ctx.request.query_params.get("state") or None
    if state not in STATES:
        state = None
    try:
        number = max(1, int(ctx.request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    s = ctx.console.settings
    rows, total = await run_in_threadpool(
        campaign_page, ctx.console.engine, s.sms_zone, state=state, page=number, per_page=PER_PAGE
    )
    pages = max(1, -(-total // PER_PAGE))
    return ctx.page(
        "campaigns.html", rows=rows, state=state, states=STATES, page=number, pages=pages
    )


def _detail(ctx: Ctx, slug: str) -> dict[str, Any]:
    engine, zone = ctx.console.engine, ctx.console.settings.sms_zone
    campaign = control.find(engine, slug)
    status = campaign_status(engine, slug, zone)
    report = None
    if campaign.state not in (CampaignState.DRAFT, CampaignState.SCHEDULED):
        report = campaign_report(engine, slug, zone)
    return {"campaign": campaign, "status": status, "report": report}


@page(StaffRole.VIEWER)
async def detail(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    try:
        found = await run_in_threadpool(_detail, ctx, slug)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    campaign: Campaign = found["campaign"]
    if campaign.state == CampaignState.DRAFT:
        return RedirectResponse(f"/campaigns/{slug}/edit", 303, headers=HEADERS)
    channels = [c for c in ("email", "sms") if c in found["status"]]
    return ctx.page(
        "campaign.html",
        **found,
        channels=channels,
        statuses=STATUSES,
        error=None,
    )


@page(StaffRole.VIEWER)
async def progress(ctx: Ctx) -> Response:
    """The live counts, one indexed query: `{"state", <channel>: {status: n}}`."""
    found = await run_in_threadpool(
        progress_of, ctx.console.engine, ctx.request.path_params["slug"]
    )
    if found is None:
        return JSONResponse({"error": "no such campaign"}, 404, headers=HEADERS)
    return JSONResponse(found, headers=HEADERS)


@page(StaffRole.VIEWER)
async def report_csv(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    engine = ctx.console.engine

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        write_csv(
            buffer,
            list(RECIPIENT_COLUMNS),
            (
                {c: getattr(r, c) for c in RECIPIENT_COLUMNS}
                for r in unsent_recipients(engine, slug)
            ),
        )
        yield buffer.getvalue()

    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{slug}-unsent.csv"'}
    return StreamingResponse(
        iterate_in_threadpool(lines()), media_type="text/csv; charset=utf-8", headers=headers
    )


async def _campaign(ctx: Ctx) -> Campaign | Response:
    slug = ctx.request.path_params["slug"]
    try:
        return await run_in_threadpool(control.find, ctx.console.engine, slug)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)


async def _refused(ctx: Ctx, campaign: Campaign, message: str, code: int = 409) -> Response:
    found = await run_in_threadpool(_detail, ctx, campaign.slug)
    channels = [c for c in ("email", "sms") if c in found["status"]]
    return ctx.page(
        "campaign.html", code, **found, channels=channels, statuses=STATUSES, ok=None, error=message
    )


class Refused(Exception):
    """The console will not do it: the campaign's page again, with `message`."""

    def __init__(self, message: str, code: int = 409) -> None:
        super().__init__(message)
        self.code = code


async def _control(ctx: Ctx, action: str, notice: str, act: Callable[[int], str]) -> Response:
    """One control of a campaign: `act(its id)` (run in a thread) returns the
    audit row's detail, or raises `Refused` or a `DispatcherError` (the campaign's page
    with the reason); done, the audit row `action`, then the campaign's page with
    `notice`."""
    campaign = await _campaign(ctx)
    if isinstance(campaign, Response):
        return campaign
    assert campaign.id is not None
    try:
        detail = await run_in_threadpool(act, campaign.id)
    except Refused as exc:
        return await _refused(ctx, campaign, str(exc), exc.code)
    except DispatcherError as exc:
        return await _refused(ctx, campaign, str(exc))
    await ctx.audit(action, campaign_id=campaign.id, detail=detail)
    return _done(ctx, campaign.slug, notice)


@page(StaffRole.MARKETER)
async def pause(ctx: Ctx) -> Response:
    reason = ctx.field("reason").strip() or f"paused by {ctx.staff_name} in the console"

    def act(campaign_id: int) -> str:
        if not control.pause(ctx.console.engine, campaign_id, by=PausedBy.PERSON, reason=reason):
            raise Refused("فقط کارزار زمان‌بندی‌شده یا در حال ارسال متوقف می‌شود.")
        return reason

    return await _control(ctx, "campaign-pause", "کارزار متوقف شد.", act)


@page(StaffRole.MARKETER)
async def resume(ctx: Ctx) -> Response:
    lease = timedelta(seconds=ctx.console.settings.send_lease_seconds)

    def act(campaign_id: int) -> str:
        broker, actors = ctx.console.queue()
        done = control.resume(ctx.console.engine, broker, campaign_id, actors, lease=lease)
        return f"{done.enqueued} enqueued"

    return await _control(ctx, "campaign-resume", "کارزار ادامه یافت.", act)


@page(StaffRole.MARKETER)
async def cancel(ctx: Ctx) -> Response:
    reason = ctx.field("reason").strip() or f"cancelled by {ctx.staff_name} in the console"

    def act(campaign_id: int) -> str:
        if ctx.field("confirm") != "yes":
            raise Refused("برای لغو، تأیید را علامت بزنید.", 400)
        return f"{control.cancel(ctx.console.engine, campaign_id, reason=reason)} skipped"

    return await _control(ctx, "campaign-cancel", "کارزار لغو شد.", act)


@page(StaffRole.MARKETER)
async def retry_failed(ctx: Ctx) -> Response:
    channel = ctx.field("channel")

    def act(campaign_id: int) -> str:
        broker, actors = ctx.console.queue()
        n = control.retry_failed(
            ctx.console.engine,
            broker,
            campaign_id,
            actors,
            channel=Channel(channel) if channel in ("email", "sms") else None,
        )
        return f"{n} queued"

    return await _control(ctx, "campaign-retry-failed", "ناموفق‌ها دوباره در صف قرار گرفتند.", act)


def draft_of(campaign: Campaign) -> Draft:
    """A campaign's form: its draft, or the spec frozen when it was sent."""
    if campaign.state == CampaignState.DRAFT:
        return Draft.from_json(campaign.spec.get("draft", {}))
    return Draft.from_spec(CampaignSpec.from_json(campaign.spec))
