"""Drafts: compose, edit (validate's problems, the audience, the SMS length and cost on
every save), preview, test-send, schedule and reschedule; a campaign file uploaded as a
draft. Each step calls what `dispatcher campaign ...` calls (`dispatcher.plan`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response

from dispatcher import plan
from dispatcher.audience.normalise import external_id_forms
from dispatcher.console.auth import Ctx, page
from dispatcher.console.campaigns import draft_of
from dispatcher.console.view import HEADERS
from dispatcher.definition.campaign import SAMPLE_MEMBER, SAMPLE_UNSUBSCRIBE_URL, CampaignSpec
from dispatcher.definition.draft import Draft, from_upload
from dispatcher.definition.persian import jalali
from dispatcher.definition.sendtime import future_send_at
from dispatcher.delivery import control
from dispatcher.errors import DispatcherError, NotFoundError, RenderError
from dispatcher.queue import drafts as store
from dispatcher.queue.sample import varied_sample
from dispatcher.runtime import Runtime
from dispatcher.sms.text import measure, with_footer
from dispatcher.store.models import Campaign, CampaignState, Member, StaffRole, utcnow
from dispatcher.testsend import send_test_copies, targets

SAMPLE_LINKS = plan.SAMPLE_LINKS


def _draft(ctx: Ctx) -> Draft:
    form = ctx.form
    assert form is not None
    return Draft.from_form(form, [str(c) for c in form.getlist("channels")])


def _default_send_at(ctx: Ctx) -> str:
    """Tomorrow at 10:00 in the shop's zone, in Jalali with Persian digits."""
    local = (utcnow() + timedelta(days=1)).astimezone(ctx.console.settings.sms_zone)
    return jalali(local.replace(hour=10, minute=0, second=0), "%Y-%m-%d %H:%M")


def _editor(
    ctx: Ctx,
    draft: Draft,
    *,
    campaign: Campaign | None,
    review: dict[str, Any] | None,
    status_code: int = 200,
    error: str | None = None,
    ok: str | None = None,
) -> Response:
    return ctx.page(
        "draft.html",
        status_code,
        draft=draft,
        campaign=campaign,
        review=review,
        error=error,
        ok=ok,
        default_send_at=_default_send_at(ctx),
        rials=ctx.console.settings.sms_part_rials,
    )


@page(StaffRole.VIEWER)
async def new(ctx: Ctx) -> Response:
    return _editor(ctx, Draft(), campaign=None, review=None)


@page(StaffRole.MARKETER)
async def create(ctx: Ctx) -> Response:
    draft = _draft(ctx)
    try:
        campaign = await run_in_threadpool(store.create_draft, ctx.console.engine, draft)
    except DispatcherError as exc:
        return _editor(ctx, draft, campaign=None, review=None, status_code=400, error=str(exc))
    await run_in_threadpool(_review, ctx, campaign, draft)
    await ctx.audit("draft-create", campaign_id=campaign.id, detail=draft.slug)
    return RedirectResponse(f"/campaigns/{quote(draft.slug)}/edit", 303, headers=HEADERS)


@page(StaffRole.MARKETER)
async def upload(ctx: Ctx) -> Response:
    """A campaign file uploaded (field `file`) becomes a draft (`campaign import`)."""
    file = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(file, UploadFile):
        return _editor(ctx, Draft(), campaign=None, review=None, status_code=400,
                       error="پروندهٔ کارزار (TOML) را انتخاب کنید.")  # fmt: skip
    content = await file.read()
    try:
        draft = from_upload(file.filename or "campaign.toml", content)
        campaign = await run_in_threadpool(store.import_draft, ctx.console.engine, draft)
    except DispatcherError as exc:
        return _editor(ctx, Draft(), campaign=None, review=None, status_code=400, error=str(exc))
    await run_in_threadpool(_review, ctx, campaign, draft)
    await ctx.audit("draft-import", campaign_id=campaign.id, detail=draft.slug)
    return RedirectResponse(f"/campaigns/{quote(draft.slug)}/edit", 303, headers=HEADERS)


def _review(ctx: Ctx, campaign: Campaign, draft: Draft) -> dict[str, Any]:
    """Check the draft now (`validate`'s work: on every save) and keep what was found."""
    found = plan.review(ctx.console.engine, ctx.console.settings, draft).to_json()
    assert campaign.id is not None
    store.keep_review(ctx.console.engine, campaign.id, found)
    return found


def _load_and_review(ctx: Ctx, slug: str) -> tuple[Campaign, Draft, dict[str, Any]]:
    """The draft and what its last save found (checked now if it never was)."""
    campaign, draft = store.load_draft(ctx.console.engine, slug)
    kept = campaign.spec.get("review")
    return campaign, draft, kept if kept is not None else _review(ctx, campaign, draft)


@page(StaffRole.VIEWER)
async def edit(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    try:
        campaign, draft, review = await run_in_threadpool(_load_and_review, ctx, slug)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    except DispatcherError:  # no longer a draft
        return RedirectResponse(f"/campaigns/{quote(slug)}", 303, headers=HEADERS)
    return _editor(ctx, draft, campaign=campaign, review=review, ok=ctx.notice)


@page(StaffRole.MARKETER)
async def save(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    draft = _draft(ctx)
    try:
        campaign = await run_in_threadpool(store.save_draft, ctx.console.engine, slug, draft)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    except DispatcherError as exc:
        return _editor(ctx, draft, campaign=None, review=None, status_code=400, error=str(exc))
    await run_in_threadpool(_review, ctx, campaign, draft)
    await ctx.audit("draft-edit", campaign_id=campaign.id, detail=draft.slug)
    return ctx.done(f"/campaigns/{quote(draft.slug)}/edit", "پیش‌نویس ذخیره شد.")


def _spec(ctx: Ctx, slug: str) -> tuple[Campaign, CampaignSpec | None, list[str]]:
    """The campaign and what it sends: a draft checked now, or the recorded spec."""
    campaign = control.find(ctx.console.engine, slug)
    if campaign.state != CampaignState.DRAFT:
        return campaign, CampaignSpec.from_json(campaign.spec), []
    spec, problems = draft_of(campaign).check(**plan.load_options(ctx.console.settings))
    return campaign, spec, problems


def _member_context(ctx: Ctx, external_id: str | None) -> dict[str, Any] | None:
    if not external_id:
        return dict(SAMPLE_MEMBER)
    with Session(ctx.console.engine) as session:
        found = session.exec(
            select(Member).where(col(Member.external_id).in_(external_id_forms(external_id)))
        ).first()
    return found.template_context() if found is not None else None


def _preview(ctx: Ctx, slug: str, member: str | None) -> dict[str, Any]:
    campaign, spec, problems = _spec(ctx, slug)
    out: dict[str, Any] = {"campaign": campaign, "problems": problems, "email": None, "sms": None}
    out["samples"], out["member"] = [], member
    if spec is None:
        return out
    s = ctx.console.settings
    kept = campaign.spec.get("review") if campaign.state == CampaignState.DRAFT else None
    if kept is not None:  # chosen when the draft was saved
        out["samples"] = kept["samples"]
    elif ctx.request.query_params.get("samples"):  # chosen now, when asked (a full read)
        chosen = varied_sample(ctx.console.engine, spec, size=SAMPLE_LINKS)
        out["samples"] = [m.external_id for m in chosen][:SAMPLE_LINKS]
    context = _member_context(ctx, member)
    if context is None:
        out["problems"] = [f"no member with external_id {member!r}"]
        return out
    templates = spec.templates({"name": plan.shop_name(s.mail_from)}, zone=s.sms_zone)
    try:
        if spec.email:
            out["email"] = templates.render_email(context, SAMPLE_UNSUBSCRIBE_URL)
        if spec.sms:
            text = with_footer(templates.render_sms(context), s.sms_optout_footer)
            out["sms"] = {"text": text, "length": measure(text)}
    except RenderError as exc:
        out["problems"] = [str(exc)]
    return out


@page(StaffRole.VIEWER)
async def preview(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    member = ctx.request.query_params.get("member") or None
    try:
        found = await run_in_threadpool(_preview, ctx, slug, member)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    return ctx.page("preview.html", **found)


def _send_tests(ctx: Ctx, spec: CampaignSpec, to: list[str]) -> list[Any]:
    s = ctx.console.settings
    addresses = targets(to)
    rt = Runtime.from_settings(s)
    try:
        url = f"{s.unsubscribe_base_url}/u/test-copy"  # a test copy's link unsubscribes no one
        return send_test_copies(
            rt, spec, addresses, member=dict(SAMPLE_MEMBER), unsubscribe_url=url
        )
    finally:
        rt.close()


@page(StaffRole.MARKETER)
async def test_send(ctx: Ctx) -> Response:
    """`POST /campaigns/{slug}/test` (field `to`): `campaign test`'s copies."""
    slug = ctx.request.path_params["slug"]
    to = [t for t in re.split(r"[\s,،;]+", ctx.field("to")) if t]
    try:
        campaign, spec, _problems = await run_in_threadpool(_spec, ctx, slug)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    if spec is None or not to:
        why = "ابتدا مشکلات کارزار را برطرف کنید." if spec is None else "نشانی گیرنده را بنویسید."
        return await _back(ctx, campaign, why)
    try:
        copies = await run_in_threadpool(_send_tests, ctx, spec, to)
    except DispatcherError as exc:
        return await _back(ctx, campaign, str(exc))
    summary = "، ".join(f"{c.channel} {c.address}: {c.outcome}" for c in copies)
    await ctx.audit("campaign-test", campaign_id=campaign.id, detail=summary)
    return _ok(ctx, campaign, f"نسخهٔ آزمایشی: {summary}")


def _ok(ctx: Ctx, campaign: Campaign, message: str) -> Response:
    where = "edit" if campaign.state == CampaignState.DRAFT else ""
    return ctx.done(f"/campaigns/{quote(campaign.slug)}/{where}".rstrip("/"), message)


async def _back(ctx: Ctx, campaign: Campaign, error: str) -> Response:
    """The page a form was on, again, with what went wrong (409)."""
    if campaign.state == CampaignState.DRAFT:
        campaign, draft, review = await run_in_threadpool(_load_and_review, ctx, campaign.slug)
        return _editor(ctx, draft, campaign=campaign, review=review, status_code=409, error=error)
    return ctx.done(f"/campaigns/{quote(campaign.slug)}", error)


def _schedule(ctx: Ctx, slug: str, when: str) -> tuple[Campaign, str | None]:
    """The draft scheduled (or sent now) under `campaign send`'s rules; or why not."""
    campaign, draft = store.load_draft(ctx.console.engine, slug)
    review = plan.review(ctx.console.engine, ctx.console.settings, draft)
    if not review.ok or review.spec is None:
        return campaign, "کارزار مشکل دارد؛ پیش از زمان‌بندی برطرفش کنید."
    broker, actors = (
        ctx.console.queue() if plan.send_at_of(when, ctx.console.settings) is None else (None, {})
    )
    try:
        result = plan.schedule(
            ctx.console.engine,
            ctx.console.settings,
            review.spec,
            when,
            keys=ctx.console.keys,
            broker=broker,  # type: ignore[arg-type]
            actors=actors,
        )
    except DispatcherError as exc:
        return campaign, str(exc)
    return result.campaign, None


@page(StaffRole.MARKETER)
async def schedule(ctx: Ctx) -> Response:
    """`POST /campaigns/{slug}/schedule` (field `send_at`: Jalali, ISO or `now`)."""
    slug = ctx.request.path_params["slug"]
    when = ctx.field("send_at")
    try:
        campaign, error = await run_in_threadpool(_schedule, ctx, slug, when)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    except DispatcherError as exc:
        campaign = await run_in_threadpool(control.find, ctx.console.engine, slug)
        return await _back(ctx, campaign, str(exc))
    if error is not None:
        return await _back(ctx, campaign, error)
    await ctx.audit("campaign-schedule", campaign_id=campaign.id, detail=when or "now")
    return _ok(ctx, campaign, "کارزار زمان‌بندی شد." if campaign.send_at else "ارسال آغاز شد.")


@page(StaffRole.MARKETER)
async def reschedule(ctx: Ctx) -> Response:
    slug = ctx.request.path_params["slug"]
    try:
        campaign = await run_in_threadpool(control.find, ctx.console.engine, slug)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=slug)
    try:
        when = future_send_at(ctx.field("send_at"), ctx.console.settings.sms_zone)
    except DispatcherError as exc:
        return await _back(ctx, campaign, str(exc))
    assert campaign.id is not None
    if not await run_in_threadpool(
        control.reschedule, ctx.console.engine, campaign.id, send_at=when
    ):
        return await _back(ctx, campaign, "فقط کارزار زمان‌بندی‌شده جابه‌جا می‌شود.")
    await ctx.audit("campaign-reschedule", campaign_id=campaign.id, detail=when.isoformat())
    return _ok(ctx, campaign, "زمان ارسال تغییر کرد.")
