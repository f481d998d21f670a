"""Link clicks end to end: emails sent by the workers, their links clicked over HTTP
(Starlette's TestClient; a real uvicorn process for the shutdown), the counts read
back from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col
from starlette.testclient import TestClient

from dispatcher.audience.addresses import address_keys
from dispatcher.audience.clicktoken import ClickSigner
from dispatcher.definition.campaign import load_campaign
from dispatcher.delivery.clicks import purge_seen
from dispatcher.delivery.control import finish_if_done
from dispatcher.delivery.privacy import export_member
from dispatcher.delivery.report import campaign_report
from dispatcher.queue.expansion import expand
from dispatcher.scheduler import Scheduler
from dispatcher.settings import Settings
from dispatcher.sms.outbox import SmsOutbox
from dispatcher.store.db import make_engine
from dispatcher.store.models import Campaign, ClickCount, ClickSeen, Delivery, utcnow
from dispatcher.web import create_app
from tests.factories import Harness, add_member, write_campaign
from tests.web.test_app import ROOT, SERVER_SECRET, free_port

HTML = """{% extends "email_layout.html" %}{% block content %}
<p>{{ member.first_name }} عزیز، <a href="https://shop.example/yalda?x=1&amp;y=2">حراج</a></p>
<p><a href="https://shop.example/gift">هدیه</a> <a href="mailto:help@shop.example">ایمیل</a>
<a href="tel:+982112345678">تلفن</a> <a href="#top">بالا</a></p>
{% endblock %}
"""
YALDA, GIFT = "https://shop.example/yalda?x=1&y=2", "https://shop.example/gift"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
CLICK = re.compile(r'href="(https://shop\.example/c/[^"]+)"')

PREFIXES = ("SMTP_", "REDIS_", "DATABASE_", "UNSUBSCRIBE_", "MAIL_", "CLICK_", "SUPPRESSION_")
Pipeline = Callable[..., Harness]


def parts(path: Path) -> tuple[str, str]:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()  # type: ignore[attr-defined]


def sent_emails(h: Harness) -> dict[str, Path]:
    """external id -> the .eml the outbox got."""
    found = {}
    for path in (h.settings.outbox_dir / "email").glob("*.eml"):
        to = email.message_from_bytes(path.read_bytes(), policy=policy.default)["To"]
        found[str(to).split("@")[0].upper()] = path
    return found


def click_paths(path: Path) -> list[str]:
    return [urlsplit(u).path for u in CLICK.findall(parts(path)[0])]


@pytest.fixture
def sent(pipeline: Pipeline, tmp_path: Path, redis_url: str, redis_namespace: str) -> Harness:
    """Two members' emails, sent by the workers through real Redis, a minute ago."""
    h = pipeline(redis_url=redis_url, redis_namespace=redis_namespace, click_flush_interval=60.0)
    add_member(h.engine, "C1", email="c1@example.com")
    add_member(h.engine, "C2", email="c2@example.com")
    h.send(write_campaign(tmp_path / "c", html=HTML))
    h.run_workers()
    with h.engine.begin() as conn:  # sent a minute ago: past CLICK_SCANNER_SECONDS
        conn.execute(update(Delivery).values(sent_at=utcnow() - timedelta(minutes=1)))
    return h


@pytest.fixture
def client(sent: Harness) -> Iterator[TestClient]:
    with TestClient(create_app(sent.settings), follow_redirects=False) as c:
        yield c


def flush(client: TestClient) -> None:
    client.app.state.web.clicks.flush()  # type: ignore[attr-defined]


def report_clicks(engine: Engine) -> tuple[dict[str, object], list[dict[str, object]]]:
    row = campaign_report(engine, "yalda-test")["email"]
    return row, row["clicks"]


def test_links_are_rewritten_except_mailto_tel_anchors_and_the_unsubscribe_link(
    sent: Harness,
) -> None:
    html, text = parts(sent_emails(sent)["C1"])
    assert len(CLICK.findall(html)) == 2
    assert YALDA.replace("&", "&amp;") not in html and GIFT not in html
    for kept in ("mailto:help@shop.example", "tel:+982112345678", "#top"):
        assert f'href="{kept}"' in html
    assert re.search(r'href="https://shop\.example/u/[^"]+"', html)  # unsubscribe
    assert re.search(r'href="https://shop\.example/v/[^"]+"', html)  # web copy
    assert "https://shop.example/c/" in text and GIFT not in text
    assert re.search(r"https://shop\.example/u/\S+", text)
    assert click_paths(sent_emails(sent)["C1"]) != click_paths(sent_emails(sent)["C2"])


def test_a_click_redirects_to_the_original_link(sent: Harness, client: TestClient) -> None:
    yalda, gift = click_paths(sent_emails(sent)["C1"])
    for path, original in ((yalda, YALDA), (gift, GIFT)):
        response = client.get(path, headers=BROWSER)
        assert response.status_code == 302 and response.headers["location"] == original
        assert response.headers["cache-control"] == "no-store"


def test_forged_and_altered_tokens_get_the_404_page(sent: Harness, client: TestClient) -> None:
    path = click_paths(sent_emails(sent)["C1"])[0]
    last = "A" if path[-1] != "A" else "B"
    signer = ClickSigner(sent.settings.unsubscribe_keys())
    for bad in (
        path[:-1] + last,  # altered
        path[:10] + ("x" if path[10] != "x" else "y") + path[11:],
        "/c/" + "A" * 42,  # forged
        "/c/" + "A" * 24,
        "/c/" + signer.sign(1, 9, None, 1),  # genuine, but no such link
        "/c/" + signer.sign(999, 0, None, 1),  # genuine, but no such campaign
        "/c/?next=https://evil.example",
    ):
        response = client.get(bad, headers=BROWSER)
        assert response.status_code == 404, bad
        assert "location" not in response.headers
    flush(client)
    with Session(sent.engine) as session:
        assert session.execute(select(func.count()).select_from(ClickCount)).scalar_one() == 0


def test_head_redirects_without_counting(sent: Harness, client: TestClient) -> None:
    path = click_paths(sent_emails(sent)["C1"])[0]
    response = client.head(path, headers=BROWSER)
    assert response.status_code == 302 and response.headers["location"] == YALDA
    flush(client)
    assert report_clicks(sent.engine)[1] == []


def test_unique_clicks_count_each_delivery_once(sent: Harness, client: TestClient) -> None:
    emails = sent_emails(sent)
    (c1_yalda, c1_gift), (c2_yalda, _) = click_paths(emails["C1"]), click_paths(emails["C2"])
    for path in (c1_yalda, c1_yalda, c1_gift, c2_yalda):
        assert client.get(path, headers=BROWSER).status_code == 302
    flush(client)
    assert client.get(c1_yalda, headers=BROWSER).status_code == 302  # a later batch
    flush(client)
    row, clicks = report_clicks(sent.engine)
    assert clicks == [
        {"url": YALDA, "variant": "A", "clicks": 4, "unique": 2, "scanner": 0},
        {"url": GIFT, "variant": "A", "clicks": 1, "unique": 1, "scanner": 0},
    ]
    assert row["unique_clicks"] == 2 and row["click_rate"] == 1.0


def test_clicks_are_written_in_batches_not_per_request(sent: Harness, client: TestClient) -> None:
    path = click_paths(sent_emails(sent)["C1"])[0]
    for _ in range(20):
        assert client.get(path, headers=BROWSER).status_code == 302
    with Session(sent.engine) as session:
        assert session.execute(select(func.count()).select_from(ClickCount)).scalar_one() == 0
    flush(client)
    assert report_clicks(sent.engine)[1][0]["clicks"] == 20


def test_scanner_clicks_are_counted_apart(sent: Harness, client: TestClient) -> None:
    emails = sent_emails(sent)
    c1, c2 = click_paths(emails["C1"])[0], click_paths(emails["C2"])[0]
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"}
    assert client.get(c1, headers=scanner).status_code == 302
    with sent.engine.begin() as conn:  # C2's email just went out
        conn.execute(
            update(Delivery)
            .where(col(Delivery.id) == int(emails["C2"].stem.rsplit("-", 1)[1]))
            .values(sent_at=utcnow())
        )
    assert client.get(c2, headers=BROWSER).status_code == 302
    flush(client)
    row, clicks = report_clicks(sent.engine)
    assert clicks == [{"url": YALDA, "variant": "A", "clicks": 0, "unique": 0, "scanner": 2}]
    assert row["unique_clicks"] == 0 and row["scanner_clicks"] == 2


def test_nothing_of_a_click_is_in_the_member_export(sent: Harness, client: TestClient) -> None:
    before = export_member(sent.engine, "C1")
    for path in click_paths(sent_emails(sent)["C1"]):
        assert client.get(path, headers=BROWSER).status_code == 302
    flush(client)
    assert report_clicks(sent.engine)[0]["unique_clicks"] == 1
    after = export_member(sent.engine, "C1")
    assert after == before
    assert "shop.example/gift" not in str(after) and "click" not in str(after).lower()


def test_dedupe_hashes_are_gone_after_the_retention(sent: Harness, client: TestClient) -> None:
    for path in click_paths(sent_emails(sent)["C1"]):
        assert client.get(path, headers=BROWSER).status_code == 302
    flush(client)
    with Session(sent.engine) as session:
        campaign = session.execute(select(Campaign)).scalar_one()
    assert campaign.id is not None
    finished = utcnow()
    assert finish_if_done(sent.engine, campaign.id, now=finished)
    days = sent.settings.click_dedupe_days
    assert purge_seen(sent.engine, days=days, now=finished + timedelta(days=days - 1)) == 0
    later = finished + timedelta(days=days, hours=1)
    scheduler = Scheduler(sent.runtime, sent.broker, sent.actors, clock=lambda: later)
    assert scheduler.tick().click_hashes_purged == 3  # the scheduler purges, hourly
    with Session(sent.engine) as session:
        assert session.execute(select(func.count()).select_from(ClickSeen)).scalar_one() == 0
    assert report_clicks(sent.engine)[0]["unique_clicks"] == 1  # the counts stay


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`uvicorn unsubscribe_server:app` in its own process: (base URL, process)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env.update(
        DATABASE_URL=sqlite_url,
        UNSUBSCRIBE_SECRET=SERVER_SECRET,
        SUPPRESSION_KEY="server-suppression-key",
        UNSUBSCRIBE_BASE_URL="https://shop.example",
        CLICK_FLUSH_INTERVAL="60",
        CLICK_SCANNER_SECONDS="0",
        PYTHONPATH=str(ROOT),
    )
    command = [sys.executable, "-m", "uvicorn", "unsubscribe_server:app", "--port", str(port)]
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (tmp_path / "uvicorn.log").read_text()
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    assert b"Traceback" not in (tmp_path / "uvicorn.log").read_bytes()


def test_a_real_server_writes_its_clicks_when_it_stops(
    server: tuple[str, subprocess.Popen[bytes]],
    sqlite_url: str,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    base, proc = server
    engine = make_engine(sqlite_url)
    try:
        campaign_id, delivery_id = _a_sent_campaign(engine, make_settings(), tmp_path)
        token = ClickSigner([SERVER_SECRET.encode()]).sign(campaign_id, 1, None, delivery_id)
        with httpx.Client(base_url=base, headers=BROWSER) as http:
            response = http.get(f"/c/{token}")
            assert response.status_code == 302 and response.headers["location"] == GIFT
            assert http.get(f"/c/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}").status_code == 404
        assert _counted(engine) == 0  # kept in memory until the next batch ...
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
        assert _counted(engine) == 1  # ... and written at shutdown
    finally:
        engine.dispose()


def _a_sent_campaign(engine: Engine, settings: Settings, tmp_path: Path) -> tuple[int, int]:
    add_member(engine, "C1", email="c1@example.com")
    spec = load_campaign(write_campaign(tmp_path / "c", html=HTML))
    result = expand(engine, spec, keys=address_keys(settings))
    with engine.begin() as conn:
        conn.execute(update(Delivery).values(status="sent", sent_at=utcnow()))
        delivery_id = conn.execute(select(col(Delivery.id))).scalar_one()
    assert result.campaign.id is not None and delivery_id is not None
    return result.campaign.id, delivery_id


def _counted(engine: Engine) -> int:
    with Session(engine) as session:
        total = session.execute(select(func.coalesce(func.sum(ClickCount.clicks), 0)))
        return int(total.scalar_one())


def test_sms_links_are_tracked_with_a_short_token_when_asked(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    h = pipeline(sms_send_window="00:00-24:00")
    add_member(h.engine, "C1", email=None, mobile="+989121234567")
    path = write_campaign(
        tmp_path / "c", channels=("sms",), sms="حراج یلدا: https://shop.example/yalda"
    )
    path.write_text(path.read_text(encoding="utf-8") + "track_links = true\n", "utf-8")
    h.send(path)
    h.run_workers()
    [record] = SmsOutbox(h.settings.outbox_dir / "sms").records()
    [link] = re.findall(r"https://shop\.example/c/(\S+)", record["message"])
    assert len(link) == 24 and "shop.example/yalda" not in record["message"]
    with h.engine.begin() as conn:
        conn.execute(update(Delivery).values(sent_at=utcnow() - timedelta(minutes=1)))
    with TestClient(create_app(h.settings), follow_redirects=False) as client:
        response = client.get(f"/c/{link}", headers=BROWSER)
        assert response.headers["location"] == "https://shop.example/yalda"
    sms = campaign_report(h.engine, "yalda-test")["sms"]
    assert sms["clicks"] == [
        {
            "url": "https://shop.example/yalda",
            "variant": "A",
            "clicks": 1,
            "unique": 1,
            "scanner": 0,
        }
    ]
    assert sms["unique_clicks"] == 1 and sms["click_rate"] == 1.0


def test_sms_links_are_left_alone_by_default(pipeline: Pipeline, tmp_path: Path) -> None:
    h = pipeline(sms_send_window="00:00-24:00")
    add_member(h.engine, "C1", email=None, mobile="+989121234567")
    h.send(write_campaign(tmp_path / "c", channels=("sms",), sms="https://shop.example/yalda"))
    h.run_workers()
    [record] = SmsOutbox(h.settings.outbox_dir / "sms").records()
    assert "https://shop.example/yalda" in record["message"]
