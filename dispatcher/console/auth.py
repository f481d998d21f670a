"""Sign-in, sessions and the checks every page passes: a live session, the CSRF token
of every POST (403 without it, nothing changed) and the role (403 beyond it)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dispatcher.console.view import HEADERS
from dispatcher.store import audit
from dispatcher.store.models import StaffRole
from dispatcher.store.staff import (
    IDLE,
    SessionInfo,
    current_session,
    end_session,
    sign_in,
    start_session,
)

if TYPE_CHECKING:
    from dispatcher.console.application import Console

SESSION_COOKIE = "console_session"
LOGIN_CSRF_COOKIE = "console_login_csrf"
RANK = {StaffRole.VIEWER: 0, StaffRole.MARKETER: 1, StaffRole.ADMIN: 2}
MAX_FIELDS = 40
MAX_UPLOAD = 20 * 1024 * 1024


@dataclass
class Ctx:
    """One signed-in request: who, their form (for a POST) and the console."""

    request: Request
    console: Console
    session: SessionInfo
    form: FormData | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def staff_name(self) -> str:
        return self.session.staff.name

    @property
    def role(self) -> StaffRole:
        return self.session.staff.role

    def can(self, role: StaffRole) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def address(self) -> str | None:
        return self.request.client.host if self.request.client else None

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else ""

    def done(self, target: str, message: str) -> Response:
        """303 to `target`, which shows `message` once: signed for this session, so a
        link from anywhere else cannot put words on the console's pages."""
        sep = "&" if "?" in target else "?"
        url = f"{target}{sep}ok={quote(message)}&okt={self._notice_tag(message)}"
        return RedirectResponse(url, 303, headers=HEADERS)

    @property
    def notice(self) -> str | None:
        """The message `done` sent this page, when its tag is this session's."""
        message = self.request.query_params.get("ok")
        tag = self.request.query_params.get("okt", "")
        if message and hmac.compare_digest(tag, self._notice_tag(message)):
            return message
        return None

    def _notice_tag(self, message: str) -> str:
        key = self.session.csrf_token.encode()
        return hmac.new(key, message.encode(), "sha256").hexdigest()[:32]

    def page(self, template: str, status_code: int = 200, **context: Any) -> Response:
        context.setdefault("ok", self.notice)
        return self.console.view.page(
            template,
            status_code,
            staff=self.session.staff,
            csrf_token=self.session.csrf_token,
            can=self.can,
            path=self.request.url.path,
            query=self.request.query_params,
            **context,
        )

    async def audit(
        self,
        action: str,
        *,
        campaign_id: int | None = None,
        member_id: int | None = None,
        detail: str = "",
    ) -> None:
        await run_in_threadpool(
            audit.record,
            self.console.engine,
            self.staff_name,
            action,
            campaign_id=campaign_id,
            member_id=member_id,
            detail=detail,
            address=self.address,
        )


def forbidden(console: Console, why: str) -> Response:
    return console.view.page("forbidden.html", 403, why=why, staff=None, csrf_token="")


def page(role: StaffRole) -> Callable[[Callable[[Ctx], Awaitable[Response]]], Any]:
    """The endpoint behind sign-in, CSRF (every POST) and `role` (403 beyond it)."""

    def wrap(handler: Callable[[Ctx], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            token = request.cookies.get(SESSION_COOKIE)
            session = await run_in_threadpool(current_session, console.engine, token)
            if session is None:
                if request.method == "POST":
                    return forbidden(console, "نشست شما پایان یافته است؛ دوباره وارد شوید.")
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"/login?next={target}", 303, headers=HEADERS)
            form = None
            if request.method == "POST":
                form = await request.form(max_fields=MAX_FIELDS, max_part_size=MAX_UPLOAD)
                sent = form.get("csrf_token")
                if not isinstance(sent, str) or not hmac.compare_digest(
                    sent.encode(), session.csrf_token.encode()
                ):
                    return forbidden(console, "برگهٔ ارسالی نشانهٔ امنیتی (CSRF) معتبر ندارد.")
            ctx = Ctx(request, console, session, form)
            if not ctx.can(role):
                return forbidden(console, "نقش شما اجازهٔ این کار را ندارد.")
            return await handler(ctx)

        return endpoint

    return wrap


def _cookie(response: Response, console: Console, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=not console.settings.console_insecure_cookies,
        path="/",
    )


def _login_page(console: Console, status_code: int = 200, **context: Any) -> Response:
    token = secrets.token_urlsafe(32)
    context.setdefault("error", None)
    context.setdefault("next", "/campaigns")
    response = console.view.page("login.html", status_code, csrf_token=token, staff=None, **context)
    _cookie(response, console, LOGIN_CSRF_COOKIE, token, 3600)
    return response


def _safe_next(value: object) -> str:
    text = value if isinstance(value, str) else ""
    local = text.startswith("/") and not text.startswith("//") and "\\" not in text
    return text if local else "/campaigns"


async def login_form(request: Request) -> Response:
    return _login_page(request.app.state.console, next=_safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    """`POST /login` (username, password, csrf_token): the login page's own token is
    checked against its cookie (no session yet)."""
    console: Console = request.app.state.console
    form = await request.form(max_fields=MAX_FIELDS)
    sent, expected = form.get("csrf_token"), request.cookies.get(LOGIN_CSRF_COOKIE)
    if not (
        isinstance(sent, str) and expected and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        return forbidden(console, "برگهٔ ورود نشانهٔ امنیتی (CSRF) معتبر ندارد.")
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    target = _safe_next(form.get("next"))
    address = request.client.host if request.client else None
    result = await run_in_threadpool(sign_in, console.engine, name.strip(), password)
    if result.staff is None:
        await run_in_threadpool(
            audit.record,
            console.engine,
            name.strip()[:64] or "?",
            "login-locked" if result.locked else "login-failed",
            address=address,
        )
        error = (
            "این حساب به سبب پنج گذرواژهٔ نادرست برای ۱۵ دقیقه قفل شده است."
            if result.locked
            else "نام کاربری یا گذرواژه نادرست است."
        )
        return _login_page(console, 401 if not result.locked else 429, error=error, next=target)
    token = await run_in_threadpool(start_session, console.engine, result.staff)
    await run_in_threadpool(
        audit.record, console.engine, result.staff.name, "login", address=address
    )
    response = RedirectResponse(target, 303, headers=HEADERS)
    _cookie(response, console, SESSION_COOKIE, token, int(IDLE.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@page(StaffRole.VIEWER)
async def logout(ctx: Ctx) -> Response:
    await run_in_threadpool(
        end_session, ctx.console.engine, ctx.request.cookies.get(SESSION_COOKIE)
    )
    await ctx.audit("logout")
    response = RedirectResponse("/login", 303, headers=HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
