"""`campaign report`'s figures, checked against a campaign with known outcomes: real
SMTP and Kavenegar test servers, the real unsubscribe app, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import select
from starlette.testclient import TestClient

from dispatcher.delivery.report import campaign_report, unsent_recipients
from dispatcher.delivery.report_page import reason_label, render_page
from dispatcher.feedback.bounces import record_bounce
from dispatcher.sms.text import measure
from dispatcher.store.db import session_scope
from dispatcher.store.models import BounceKind, Member
from dispatcher.web import create_app
from tests.factories import Harness, add_member, update_member, write_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle
from tests.servers.smtp_server import SmtpServerHandle

Pipeline = Callable[..., Harness]
SLUG = "yalda-test"


@pytest.fixture
def outcomes(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> tuple[Harness, KavenegarServerHandle]:
    """Email: A sent, B refused (550), C opted out before sending, D no address.
    SMS: A and D sent, B refused by Kavenegar (411), C no mobile. Then A unsubscribes
    through the link in their email."""
    h = pipeline(
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
        kavenegar_api_key=kavenegar_server.api_key,
        kavenegar_sender="10004346",
        kavenegar_base_url=kavenegar_server.base_url,
        sms_send_window="00:00-24:00",
    )
    add_member(h.engine, "A", email="a@example.com", mobile="+989121110001")
    add_member(h.engine, "B", email="b@example.com", mobile="+989121110002")
    c = add_member(h.engine, "C", email="c@example.com", mobile=None)
    add_member(h.engine, "D", email=None, mobile="+989121110004")
    smtp_server.reject_recipient("b@example.com")
    kavenegar_server.invalid_receptor("09121110002")
    h.send(write_campaign(tmp_path / "c", channels=("email", "sms")))
    update_member(h.engine, c.id, email_opt_in=False)  # after expansion: skipped at send
    h.run_workers()

    [mail] = [m for m in smtp_server.wait_for(1) if m.rcpt_to == "a@example.com"]
    link = mail.parsed["List-Unsubscribe"].strip().strip("<>")
    with TestClient(create_app(h.settings)) as client:
        answer = client.post(link.removeprefix(h.settings.unsubscribe_base_url), data=ONE_CLICK)
        assert answer.status_code == 200
    return h, kavenegar_server


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def test_the_report_counts_each_outcome_per_channel(
    outcomes: tuple[Harness, KavenegarServerHandle],
) -> None:
    h, kavenegar = outcomes
    report = campaign_report(h.engine, SLUG)
    email, sms = report["email"], report["sms"]
    assert (email["audience"], email["sent"], email["failed"], email["skipped"]) == (4, 1, 1, 1)
    assert email["excluded"] == 1 and email["optouts"] == 1
    [(reason, count)] = email["failed_by_reason"].items()
    assert count == 1 and reason.startswith("550") and "b@example.com" not in reason
    assert email["skipped_by_reason"] == {"opted out": 1}
    assert sum(m["sent"] for m in email["per_minute"]) == 1
    assert email["first_sent"] and email["per_minute_rate"]

    assert (sms["audience"], sms["sent"], sms["failed"], sms["excluded"]) == (4, 2, 1, 1)
    [sms_reason] = sms["failed_by_reason"]
    assert sms_reason.startswith("Kavenegar") and sms_reason.count("411") == 1
    accepted = kavenegar.sent()
    assert sms["cost_rials"] == sum(m["cost"] for m in accepted) > 0
    assert sms["parts"] == sum(measure(m["message"]).parts for m in accepted)
    assert sms["optouts"] == 0


def test_the_unsent_recipients_are_listed_masked(
    outcomes: tuple[Harness, KavenegarServerHandle],
) -> None:
    h, _ = outcomes
    rows = {(r.external_id, r.channel): r for r in unsent_recipients(h.engine, SLUG)}
    assert set(rows) == {("B", "email"), ("C", "email"), ("B", "sms")}
    assert rows[("B", "email")].address == "b***@example.com"
    assert rows[("B", "sms")].address == "+98912***0002"
    assert (rows[("C", "email")].status, rows[("C", "email")].reason) == ("skipped", "opted out")


def test_a_refusal_of_the_smtp_server_shows_its_code_once(
    outcomes: tuple[Harness, KavenegarServerHandle],
) -> None:
    h, _ = outcomes
    email = campaign_report(h.engine, SLUG)["email"]
    assert email["failed_by_reason"] == {"550 5.1.1 no such user": 1}  # the server's reply
    [refused] = [
        r
        for r in unsent_recipients(h.engine, SLUG)
        if r.status == "failed" and r.channel == "email"
    ]
    assert refused.reason == "550 5.1.1 no such user"


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    """Debian's headless Chromium through its chromedriver (scripts/services installs them)."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:  # pragma: no cover - environment problem
        pytest.fail("chromium and chromium-driver are needed: run scripts/services")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=fa"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_the_html_report_loads_in_chromium_with_its_charts(
    outcomes: tuple[Harness, KavenegarServerHandle], chromium: WebDriver, tmp_path: Path
) -> None:
    h, _ = outcomes
    page = tmp_path / "report.html"
    page.write_text(render_page(campaign_report(h.engine, SLUG), h.settings.sms_zone), "utf-8")
    html = page.read_text("utf-8")
    assert "<script src" not in html and "<link" not in html  # self-contained

    chromium.get(page.as_uri())
    WebDriverWait(chromium, 20).until(
        lambda d: d.execute_script("return document.documentElement.dataset.charts") == "ready"
    )
    problems = [e for e in chromium.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == []
    assert chromium.execute_script("return [document.dir, document.documentElement.lang]") == [
        "rtl",
        "fa",
    ]
    charts = chromium.execute_script(
        """return [...document.querySelectorAll('canvas')].map(c => {
             const chart = Chart.getChart(c);
             return chart && [c.id, chart.config.type, c.width > 0 && c.height > 0,
                              chart.data.datasets.map(d => [d.label, d.data])];
           });"""
    )
    by_id = {chart[0]: chart[1:] for chart in charts}
    assert set(by_id) == {"chart-outcomes", "chart-minutes-email", "chart-minutes-sms"}
    kind, drawn, datasets = by_id["chart-outcomes"]
    assert kind == "bar" and drawn
    assert dict((label, data) for label, data in datasets) == {
        "ارسال‌شده": [1, 2],
        "ناموفق": [1, 1],
        "کنار گذاشته": [1, 0],
        "حذف‌شده": [1, 1],
    }
    _, drawn, minutes = by_id["chart-minutes-sms"]
    assert drawn and sum(sum(data) for label, data in minutes if label == "ارسال‌شده") == 2
    assert "لغو عضویت به سبب این کارزار" in chromium.find_element("tag name", "main").text


@pytest.fixture
def returned(pipeline: Pipeline, tmp_path: Path) -> Harness:
    """Email to A, B, C (outbox); D opted out after expansion, E has no address. Then A
    complains and B's mail bounces hard."""
    h = pipeline()
    for name in ("A", "B", "C"):
        add_member(h.engine, name)
    d = add_member(h.engine, "D")
    add_member(h.engine, "E", email=None)
    h.send(write_campaign(tmp_path / "c"))
    update_member(h.engine, d.id, email_opt_in=False)
    h.run_workers()
    sent = {d.member_id: d.id for d in h.deliveries()}
    with session_scope(h.engine) as db:
        ids = dict(db.execute(select(Member.external_id, Member.id)).all())
        assert record_bounce(
            db, delivery_id=sent[ids["A"]], kind=BounceKind.COMPLAINT, report_id="a"
        )
        assert record_bounce(db, delivery_id=sent[ids["B"]], kind=BounceKind.HARD, report_id="b")
    return h


def test_the_report_counts_bounces_and_complaints_and_the_complaints_opt_out(
    returned: Harness,
) -> None:
    email = campaign_report(returned.engine, SLUG)["email"]
    assert (email["sent"], email["bounced"], email["complained"]) == (3, 1, 1)
    assert email["optouts"] == 1  # the complaint's opt-out, caused by this campaign


def test_the_reports_times_are_iso_to_the_second(returned: Harness) -> None:
    email = campaign_report(returned.engine, SLUG)["email"]
    for moment in (email["first_sent"], email["last_sent"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", moment), moment


def test_the_html_report_labels_reasons_in_persian(returned: Harness) -> None:
    report = campaign_report(returned.engine, SLUG)
    assert report["email"]["skipped_by_reason"] == {"opted out": 1}
    assert report["email"]["excluded_by"]["no_address"] == 1
    page = render_page(report, ZoneInfo("Asia/Tehran"))
    shown = re.sub(r"<script.*?</script>", "", page, flags=re.S)  # the data keeps its keys
    for key in ("opted_out", "no_address", "duplicate_address", "suppressed", "opted out"):
        assert key not in shown
    assert "<bdi>لغو عضویت کرده</bdi>: ۱" in shown and "<bdi>بی‌نشانی</bdi>: ۱" in shown
    assert "<th>برگشت‌خورده</th><td>۱</td>" in shown
    assert "<th>شکایت گیرنده (هرزنامه)</th><td>۱</td>" in shown


def test_a_reason_label_keeps_what_follows_a_known_prefix() -> None:
    assert reason_label("cancelled: wrong price") == "لغو کارزار: wrong price"
    assert reason_label("550 5.1.1 no such user") == "550 5.1.1 no such user"
