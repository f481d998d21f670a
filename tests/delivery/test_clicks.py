"""Click counts written in batches (SQLite and PostgreSQL), and the report built on them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from dispatcher.delivery.clicks import ClickEvent, is_scanner_agent, record_clicks
from dispatcher.delivery.report import campaign_report
from dispatcher.delivery.report_page import render_page
from dispatcher.store.models import ClickCount, ClickSeen, Delivery, utcnow
from tests.factories import Harness, add_member, write_campaign

Pipeline = Callable[..., Harness]
KEY = b"d" * 32
HTML = """{% extends "email_layout.html" %}{% block content %}
<a href="https://shop.example/a">a</a> <a href="https://shop.example/b">b</a>{% endblock %}
"""


def sent_campaign(h: Harness, tmp_path: Path, members: int = 3) -> tuple[int, list[int]]:
    for i in range(members):
        add_member(h.engine, f"C{i}")
    h.send(write_campaign(tmp_path / "c", html=HTML))
    h.run_workers()
    with h.engine.begin() as conn:
        conn.execute(update(Delivery).values(sent_at=utcnow() - timedelta(hours=1)))
    with Session(h.engine) as session:
        rows = session.execute(select(Delivery).order_by(col(Delivery.id))).scalars().all()
    return rows[0].campaign_id, [d.id for d in rows if d.id is not None]


def click(campaign_id: int, delivery_id: int, link: int, **extra: object) -> ClickEvent:
    values: dict[str, object] = dict(
        campaign_id=campaign_id,
        channel="email",
        variant=None,
        link=link,
        delivery_id=delivery_id,
        at=utcnow(),
    )
    values.update(extra)
    return ClickEvent(**values)  # type: ignore[arg-type]


def test_a_batch_counts_clicks_uniques_and_scanners_in_one_go(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    h = pipeline()
    campaign_id, (d1, d2, d3) = sent_campaign(h, tmp_path)
    batch = [
        click(campaign_id, d1, 0),
        click(campaign_id, d1, 0),
        click(campaign_id, d1, 1),
        click(campaign_id, d2, 0),
        click(campaign_id, d3, 1, scanner_agent=True),
    ]
    record_clicks(h.engine, batch, dedupe_key=KEY, scanner_seconds=10)
    record_clicks(h.engine, batch[:1], dedupe_key=KEY, scanner_seconds=10)  # seen before
    email = campaign_report(h.engine, "yalda-test")["email"]
    assert email["clicks"] == [
        {"url": "https://shop.example/a", "variant": "A", "clicks": 4, "unique": 2, "scanner": 0},
        {"url": "https://shop.example/b", "variant": "A", "clicks": 1, "unique": 1, "scanner": 1},
    ]
    assert email["unique_clicks"] == 2 and email["click_rate"] == round(2 / 3, 4)
    with Session(h.engine) as session:
        assert session.execute(select(func.count()).select_from(ClickSeen)).scalar_one() == 5
        minutes = session.execute(select(ClickCount.minute)).scalars().all()
    assert all(m.second == 0 and m.microsecond == 0 for m in minutes)


def test_a_click_right_after_the_send_is_a_scanners(pipeline: Pipeline, tmp_path: Path) -> None:
    h = pipeline()
    campaign_id, (d1, *_) = sent_campaign(h, tmp_path)
    with h.engine.begin() as conn:
        conn.execute(update(Delivery).values(sent_at=utcnow()))
    record_clicks(h.engine, [click(campaign_id, d1, 0)], dedupe_key=KEY, scanner_seconds=10)
    [row] = campaign_report(h.engine, "yalda-test")["email"]["clicks"]
    assert (row["clicks"], row["unique"], row["scanner"]) == (0, 0, 1)


def test_known_scanners_are_told_by_their_user_agent() -> None:
    assert is_scanner_agent("Mozilla/5.0 (compatible; Barracuda Sentinel)")
    assert is_scanner_agent("")
    assert not is_scanner_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148")


def test_the_html_report_shows_the_clicks_with_a_bar_chart(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    h = pipeline()
    campaign_id, (d1, *_) = sent_campaign(h, tmp_path)
    record_clicks(h.engine, [click(campaign_id, d1, 1)], dedupe_key=KEY, scanner_seconds=10)
    page = render_page(campaign_report(h.engine, "yalda-test"), ZoneInfo("Asia/Tehran"))
    assert 'id="chart-clicks-email"' in page and "https://shop.example/b" in page
    assert "کلیک‌کنندگان یکتا" in page and "chart-clicks-" in page
