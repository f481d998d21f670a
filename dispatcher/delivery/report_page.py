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

CHANNEL_NAMES = {"email": "ایمیل", "sms": "پیامک"}
STATES = {
    "scheduled": "زمان‌بندی‌شده",
    "sending": "در حال ارسال",
    "paused": "متوقف",
    "done": "پایان‌یافته",
    "cancelled": "لغوشده",
}


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
