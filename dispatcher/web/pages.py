"""The unsubscribe pages: Persian, right-to-left, no script; compiled once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.responses import HTMLResponse

_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "این پیوند معتبر نیست",
        "شاید پیوند کامل کپی نشده باشد. لطفاً روی پیوند «لغو عضویت» در پایین همان ایمیل "
        "بزنید، یا با پشتیبانی فروشگاه تماس بگیرید.",
    ),
    404: ("صفحه پیدا نشد", "نشانی این صفحه درست نیست."),
    405: ("این درخواست پذیرفته نیست", "این صفحه را فقط از راه پیوند لغو عضویت باز کنید."),
    413: ("درخواست بیش از حد بزرگ است", "این درخواست پذیرفته نشد."),
    414: ("نشانی بیش از حد بلند است", "این درخواست پذیرفته نشد."),
    500: ("خطای پیش‌بینی‌نشده", "لطفاً چند دقیقهٔ دیگر دوباره تلاش کنید."),
    503: ("سرویس موقتاً در دسترس نیست", "لطفاً چند دقیقهٔ دیگر دوباره تلاش کنید."),
}


class Pages:
    """`unsubscribe_confirm.html`, `unsubscribe_done.html` and `unsubscribe_error.html`
    from `dispatcher/templates/`, for one shop."""

    def __init__(self, shop: str) -> None:
        env = Environment(
            loader=PackageLoader("dispatcher", "templates"), autoescape=True, auto_reload=False
        )
        self._confirm = env.get_template("unsubscribe_confirm.html")
        self._done = env.get_template("unsubscribe_done.html")
        self._error = env.get_template("unsubscribe_error.html")
        self._shop = {"name": shop}

    def confirm(self, **context: Any) -> HTMLResponse:
        """The page with the unsubscribe button (and, after an undo, a notice)."""
        return HTMLResponse(self._confirm.render(shop=self._shop, **context))

    def done(self, **context: Any) -> HTMLResponse:
        """Unsubscribed (now or before), with the undo button."""
        return HTMLResponse(self._done.render(shop=self._shop, **context))

    def error(self, status: int, headers: Mapping[str, str] | None = None) -> HTMLResponse:
        title, message = _ERRORS.get(status, _ERRORS[400] if status < 500 else _ERRORS[500])
        html = self._error.render(shop=self._shop, title=title, message=message, status=status)
        return HTMLResponse(html, status_code=status, headers=headers)
