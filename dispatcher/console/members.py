"""Members: search, profile (consent and its history, deliveries), one member's consent,
a CSV import, and for an admin export and erasure; each the function `dispatcher
members ...` calls. Addresses are masked unless the staff member is an admin."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlmodel import col
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.responses import Response

from dispatcher.audience.consent import set_consent
from dispatcher.audience.lookup import find_members
from dispatcher.audience.members import ImportReport, import_members
from dispatcher.audience.normalise import external_id_forms
from dispatcher.console.auth import Ctx, page
from dispatcher.console.view import HEADERS, shown
from dispatcher.delivery.privacy import erase_member, export_member
from dispatcher.errors import DispatcherError, InputError, NotFoundError
from dispatcher.store.models import Channel, ConsentSource, Member, StaffRole


def _masked(ctx: Ctx) -> Any:
    full = ctx.can(StaffRole.ADMIN)
    return lambda address, channel: shown(address, channel, full=full)


@page(StaffRole.VIEWER)
async def search(ctx: Ctx) -> Response:
    q = ctx.request.query_params.get("q", "")
    found = await run_in_threadpool(find_members, ctx.console.engine, ctx.console.keys, q)
    return ctx.page("members.html", q=q, found=found, shown=_masked(ctx), report=None, error=None)


def _export(ctx: Ctx, typed: str) -> dict[str, Any]:
    """`members export`, for the id as typed (Persian digits and all)."""
    for external_id in external_id_forms(typed):
        try:
            return export_member(ctx.console.engine, external_id)
        except NotFoundError:
            continue
    raise NotFoundError(f"no member with external_id {typed!r}")


@page(StaffRole.VIEWER)
async def profile(ctx: Ctx) -> Response:
    typed = ctx.request.path_params["external_id"]
    try:
        member = await run_in_threadpool(_export, ctx, typed)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=typed)
    return ctx.page(
        "member.html",
        member=member,
        shown=_masked(ctx),
        error=None,
    )


def _back(ctx: Ctx, external_id: str, message: str) -> Response:
    return ctx.done(f"/members/{quote(external_id)}", message)


@page(StaffRole.MARKETER)
async def consent(ctx: Ctx) -> Response:
    """`POST /members/{external_id}/consent` (channel, opt_in): source `console`."""
    external_id = ctx.request.path_params["external_id"]
    channel, opt_in = ctx.field("channel"), ctx.field("opt_in")
    if channel not in ("email", "sms") or opt_in not in ("0", "1", "true", "false"):
        return ctx.page("missing.html", 400, what=f"channel={channel} opt_in={opt_in}")
    wanted = opt_in in ("1", "true")
    try:
        member = await run_in_threadpool(_export, ctx, external_id)
        changed = await run_in_threadpool(
            set_consent,
            ctx.console.engine,
            member["external_id"],
            Channel(channel),
            wanted,
            ConsentSource.CONSOLE,
        )
    except NotFoundError:
        return ctx.page("missing.html", 404, what=external_id)
    member_id = await run_in_threadpool(_member_id, ctx, member["external_id"])
    await ctx.audit(
        "member-consent",
        member_id=member_id,
        detail=f"{channel} opt_in={int(wanted)}" + ("" if changed else " (unchanged)"),
    )
    return _back(ctx, member["external_id"], "رضایت به‌روز شد." if changed else "تغییری لازم نبود.")


def _member_id(ctx: Ctx, external_id: str) -> int | None:
    with ctx.console.engine.connect() as conn:
        return conn.execute(
            select(col(Member.id)).where(col(Member.external_id) == external_id)
        ).scalar()


@page(StaffRole.ADMIN)
async def export(ctx: Ctx) -> Response:
    """`GET /members/{external_id}/export`: `members export`'s JSON, as a download."""
    typed = ctx.request.path_params["external_id"]
    try:
        member = await run_in_threadpool(_export, ctx, typed)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=typed)
    member_id = await run_in_threadpool(_member_id, ctx, member["external_id"])
    await ctx.audit("member-export", member_id=member_id)
    body = json.dumps(member, ensure_ascii=False, indent=2) + "\n"
    headers = {
        **HEADERS,
        "Content-Disposition": f'attachment; filename="member-{quote(member["external_id"])}.json"',
    }
    return Response(body, media_type="application/json; charset=utf-8", headers=headers)


@page(StaffRole.ADMIN)
async def erase(ctx: Ctx) -> Response:
    """`POST /members/{external_id}/erase` (confirm = the external id)."""
    typed = ctx.request.path_params["external_id"]
    try:
        member = await run_in_threadpool(_export, ctx, typed)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=typed)
    external_id = member["external_id"]
    if ctx.field("confirm").strip() not in external_id_forms(external_id):
        return ctx.page(
            "member.html",
            400,
            member=member,
            shown=_masked(ctx),
            ok=None,
            error="برای پاک کردن، شناسهٔ عضو را در کادر تأیید بنویسید.",
        )
    member_id = await run_in_threadpool(_member_id, ctx, external_id)
    try:
        erasure = await run_in_threadpool(erase_member, ctx.console.engine, external_id)
    except NotFoundError:
        return ctx.page("missing.html", 404, what=typed)
    await ctx.audit(
        "member-erase",
        member_id=member_id,
        detail=f"{erasure.deliveries_anonymised} deliveries kept anonymous",
    )
    message = f"عضو {external_id} پاک شد."
    return ctx.done("/members", message)


def _import(ctx: Ctx, name: str, content: bytes) -> ImportReport:
    with tempfile.TemporaryDirectory(prefix="import-") as tmp:
        path = Path(tmp) / (Path(name).name or "members.csv")
        path.write_bytes(content)
        return import_members(ctx.console.engine, path, keys=ctx.console.keys)


@page(StaffRole.ADMIN)
async def upload(ctx: Ctx) -> Response:
    """`POST /members/import` (a CSV in field `file`): `members import`'s report."""
    file = ctx.form.get("file") if ctx.form is not None else None
    report, error = None, None
    if not isinstance(file, UploadFile):
        error = "پروندهٔ CSV اعضا را انتخاب کنید."
    else:
        try:
            report = await run_in_threadpool(
                _import, ctx, file.filename or "members.csv", await file.read()
            )
        except InputError as exc:
            error = str(exc)
        except DispatcherError as exc:
            error = str(exc)
    if report is not None:
        await ctx.audit(
            "members-import",
            detail=f"{report.created} created, {report.updated} updated, "
            f"{len(report.rejected)} rejected",
        )
    return ctx.page(
        "members.html",
        400 if error else 200,
        q="",
        found=[],
        shown=_masked(ctx),
        report=report,
        error=error,
    )
