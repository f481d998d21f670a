"""The console's pages: one Jinja environment (Persian digits, Jalali dates in the shop's
zone, masked addresses) and the headers every answer carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from dispatcher.definition.persian import THOUSANDS, fa_digits, jalali
from dispatcher.definition.sendtime import as_utc
from dispatcher.delivery.report_page import CHANNEL_NAMES, REASONS
from dispatcher.masking import mask_email, mask_mobile

STATES = {
    "draft": "پیش‌نویس",
    "scheduled": "زمان‌بندی‌شده",
    "sending": "در حال ارسال",
    "paused": "متوقف",
    "done": "پایان‌یافته",
    "cancelled": "لغوشده",
}
STATUSES = {
    "pending": "در انتظار",
    "sending": "در حال ارسال",
    "sent": "ارسال‌شده",
    "skipped": "کنار گذاشته",
    "failed": "ناموفق",
    "excluded": "حذف‌شده از فهرست",
    "bounced": "برگشتی",
    "complained": "شکایت",
    "delivered": "رسیده",
    "undelivered": "نرسیده",
}
ROLES = {"viewer": "بیننده", "marketer": "بازاریاب", "admin": "مدیر"}
# No inline script anywhere; inline style only for the emails shown in the preview.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; frame-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def number(value: Any) -> str:
    """`1234567` -> `۱٬۲۳۴٬۵۶۷`."""
    if isinstance(value, int | float):
        return fa_digits(f"{value:,}".replace(",", THOUSANDS))
    return fa_digits(value)


class View:
    """Renders the console's templates in the shop's zone."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        env = Environment(
            loader=PackageLoader("dispatcher", "console/templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            fa=fa_digits,
            num=number,
            when=self.when,
            state=lambda s: STATES.get(s, s),
            status=lambda s: STATUSES.get(s, s),
            channel=lambda c: CHANNEL_NAMES.get(c, c),
            role=lambda r: ROLES.get(r, r),
            reason=lambda r: REASONS.get(r, r),
            percent=lambda part, whole: int(100 * part / whole) if whole else 0,
        )
        self.env = env

    def when(self, value: datetime | str | None) -> str:
        """A moment as `۱۴۰۵/۰۹/۲۹ ۱۰:۰۰` in the shop's zone; `—` for none."""
        if not value:
            return "—"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return jalali(as_utc(moment), "%Y/%m/%d %H:%M", zone=self.zone)

    def page(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def shown(address: str | None, channel: str, *, full: bool) -> str:
    """An address as a role may see it: whole for an admin, masked for the others."""
    if not address:
        return "—"
    if full:
        return address
    return mask_email(address) if channel == "email" else mask_mobile(address)
