"""`campaign report --html`: one self-contained page, right to left, in Persian.

The figures of `campaign_report` in tables, and two kinds of chart drawn by Chart.js
(vendored: `dispatcher/templates/report/chart.umd.min.js`, MIT, inlined into the
page), so the file opens anywhere, offline, with nothing fetched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dispatcher.definition.persian import fa_digits, jalali
from dispatcher.delivery.privacy import ERASED
from dispatcher.delivery.report import UNKNOWN_EXCLUSION

CHANNEL_NAMES = {"email": "ایمیل", "sms": "پیامک"}
STATES = {
    "scheduled": "زمان‌بندی‌شده",
    "sending": "در حال ارسال",
    "paused": "متوقف",
    "done": "پایان‌یافته",
    "cancelled": "لغوشده",
}

# What the report's reasons say, in Persian: the causes of an exclusion (`EXCLUSIONS`)
# and the send-time skips (`Loaded.unreachable`, an erasure, a cancel). A failure is
# the provider's own text, shown as it came.
REASONS = {
    "opted_out": "لغو عضویت کرده",
    "no_address": "بی‌نشانی",
    "duplicate_address": "نشانی مشترک با عضوی دیگر (یک پیام برای هر نشانی)",
    "suppressed": "نشانی مسدود",
    "opted out": "لغو عضویت کرده",
    "no email address": "بی‌نشانی ایمیل",
    "no mobile number": "بی‌شمارهٔ همراه",
    "mobile invalid": "شمارهٔ همراه نامعتبر",
    "address suppressed": "نشانی مسدود",
    ERASED: "عضو پاک‌شده",
    "no reason recorded": "علتی ثبت نشده",
    UNKNOWN_EXCLUSION: "لغو عضویت، بی‌نشانی یا بیرون از مخاطبان",
}
PREFIXES = {
    "cancelled: ": "لغو کارزار: ",
    "retries exhausted: ": "تلاش‌ها به پایان رسید: ",  # workers/actor.py writes it
    "render: ": "خطای قالب: ",
}


def reason_label(reason: str) -> str:
    """A reason of the report in Persian; a provider's text (or a person's, after a
    known prefix) stays as written."""
    if reason in REASONS:
        return REASONS[reason]
    for prefix, label in PREFIXES.items():
        if reason.startswith(prefix):
            return label + reason.removeprefix(prefix)
    return reason


def render_page(report: dict[str, Any], zone: ZoneInfo) -> str:
    """The report as one HTML page (Chart.js inlined)."""
    env = Environment(
        loader=PackageLoader("dispatcher", "templates/report"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
    )

    def when(value: str | None) -> str:
        if not value:
            return "—"
        return jalali(datetime.fromisoformat(value), "%Y/%m/%d %H:%M:%S", zone=zone)

    env.filters["fa_digits"] = fa_digits
    env.filters["when"] = when
    env.filters["reason"] = reason_label
    chartjs = (files("dispatcher") / "templates" / "report" / "chart.umd.min.js").read_text("utf-8")
    channels = [c for c in ("email", "sms") if c in report]
    return env.get_template("report.html").render(
        report=report,
        channels=channels,
        names=CHANNEL_NAMES,
        states=STATES,
        chartjs=chartjs,
        generated=jalali(datetime.now(UTC), "%Y/%m/%d %H:%M", zone=zone),
    )
