"""The console in real headless Chromium against `uvicorn dispatcher.console:app` in its
own process, with the scheduler and a worker running and a real SMTP server, on SQLite
and PostgreSQL: the marketer's whole day, as the issue tells it. Screenshots of each
main page (1280 px and 390 px) go to tmp/artifacts/console/ (not committed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jdatetime
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from dispatcher.audience.addresses import address_keys
from dispatcher.audience.consent import consent_changes
from dispatcher.audience.suppression import fill_missing_keys
from dispatcher.definition.persian import TEHRAN
from dispatcher.delivery.control import find
from dispatcher.settings import Settings
from dispatcher.store import audit
from dispatcher.store.models import Delivery, DeliveryStatus, StaffRole
from dispatcher.store.staff import add_staff
from tests.console.conftest import PASSWORD
from tests.factories import add_member
from tests.servers.app_server import AppServer
from tests.servers.smtp_server import SmtpServerHandle

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS", ROOT / "tmp" / "artifacts" / "console"))
MEMBERS = 24
WAIT = 90
LAYOUT = '{% extends "email_layout.html" %}{% block content %}'
BROKEN = LAYOUT + "<p>{{ member.first_name }} {% if %}</p>{% endblock %}"
FIXED = LAYOUT + "<h1>{{ member.first_name }} عزیز، حراج یلدا</h1><p>تا نیمه‌شب.</p>{% endblock %}"


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    """Debian's headless Chromium through its chromedriver (as tests/delivery/test_report.py)."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:  # pragma: no cover - environment problem
        pytest.fail("chromium and chromium-driver are needed: run scripts/services")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=fa"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_window_size(1280, 900)
    yield driver
    driver.quit()


class Processes:
    """The Procfile's worker and scheduler, on the test's database and Redis."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str) -> None:
        log = open(self.tmp_path / f"{name}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
            )
        )
        log.close()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.tmp_path.glob("*.log"))


@pytest.fixture
def deployment(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    redis_url: str,
    redis_namespace: str,
    smtp_server: SmtpServerHandle,
    make_settings: Callable[..., Settings],
) -> Iterator[tuple[AppServer, Processes]]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "SCHEDULER_INTERVAL": "0.5",
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_SECURITY": "none",
        "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
        "UNSUBSCRIBE_SECRET": "test-secret-key-0123456789",
        "SUPPRESSION_KEY": "test-suppression-key",
        "UNSUBSCRIBE_BASE_URL": "https://shop.example",
        "CONSOLE_INSECURE_COOKIES": "1",
    }
    for i in range(MEMBERS):
        add_member(engine, f"C{i:04d}", email=f"member{i:04d}@example.com")
    add_member(engine, "M2010", first_name="سارا", email="sara@example.com", mobile="+989121234567")
    with engine.begin() as conn:
        fill_missing_keys(
            conn, address_keys(make_settings(**{"suppression_key": "test-suppression-key"}))
        )
    for role in StaffRole:
        add_staff(engine, str(role), role, PASSWORD)
    add_staff(engine, "locked-out", StaffRole.VIEWER, PASSWORD)
    smtp_server.delay_data(0.4, count=1000)  # about two messages a second: time to pause
    console = AppServer("dispatcher.console:app", env, tmp_path / "console.log")
    processes = Processes(tmp_path, {**os.environ, "PYTHONPATH": str(ROOT), **env})
    processes.start(
        str(BIN / "dramatiq"),
        "dispatcher.workers:setup",
        "--processes",
        "1",
        "--threads",
        "1",
        name="worker",
    )
    processes.start(sys.executable, "-m", "dispatcher", "scheduler", name="scheduler")
    yield console, processes
    processes.close()
    console.stop()


def shoot(browser: WebDriver, name: str) -> None:
    """The page as a person sees it, at 1280 px and at 390 px (a phone)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.execute_script("return document.compatMode") == "CSS1Compat"  # no quirks
    assert browser.execute_script("return document.dir") == "rtl"
    for width in (1280, 390):
        browser.set_window_size(width, 900)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(int(height) + 120, 600), 4000))
        browser.save_screenshot(str(ARTIFACTS / f"{name}-{width}.png"))
    browser.set_window_size(1280, 900)


def wait_for(browser: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.2, ignored_exceptions=ignored)
    return wait.until(check, message=what)


def text(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "main").text)


def sign_in(browser: WebDriver, url: str, name: str, password: str = PASSWORD) -> None:
    browser.get(f"{url}/login")
    browser.find_element(By.NAME, "username").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(password)
    submit(browser, "form[action='/login'] button")


def submit(browser: WebDriver, button: str) -> None:
    """Click a form's button and wait for the page it leads to."""
    old = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.CSS_SELECTOR, button).click()
    WebDriverWait(browser, WAIT).until(lambda _: gone(old), message=f"{button}: no new page")


def gone(element: WebElement) -> bool:
    """The element's page was replaced (Chromium says so in one of two ways)."""
    try:
        element.is_enabled()
    except (StaleElementReferenceException, WebDriverException):
        return True
    return False


def sign_out(browser: WebDriver) -> None:
    submit(browser, "form[action='/logout'] button")


def post_form(browser: WebDriver, action: str, fields: dict[str, str]) -> None:
    """Submit a form the page does not offer (what a curious viewer could forge)."""
    browser.execute_script(
        """const form = document.createElement("form");
        form.method = "post"; form.action = arguments[0];
        for (const [k, v] of Object.entries(arguments[1])) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = k; input.value = v; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();""",
        action,
        fields,
    )


def fill(browser: WebDriver, name: str, value: str, form: str = "") -> None:
    field = browser.find_element(By.CSS_SELECTOR, f"{form} [name={name}]".strip())
    field.clear()
    field.send_keys(value)


def jalali_soon(seconds: int) -> str:
    moment = (datetime.now(UTC) + timedelta(seconds=seconds)).astimezone(TEHRAN)
    shown = jdatetime.datetime.fromgregorian(datetime=moment.replace(tzinfo=None))
    return shown.strftime("%Y-%m-%d %H:%M:%S").translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


def counts(engine: Engine, slug: str) -> dict[str, int]:
    campaign_id = find(engine, slug).id
    with Session(engine) as session:
        rows = session.execute(
            select(col(Delivery.status), func.count())
            .where(col(Delivery.campaign_id) == campaign_id)
            .group_by(col(Delivery.status))
        ).all()
    return {status: n for status, n in rows}


def test_the_marketers_day_in_chromium(
    deployment: tuple[AppServer, Processes],
    chromium: WebDriver,
    engine: Engine,
    smtp_server: SmtpServerHandle,
) -> None:
    console, processes = deployment
    url, browser = console.url, chromium

    # Sign-in: a wrong password, then the lockout after five.
    sign_in(browser, url, "marketer", "not the password")
    assert "نام کاربری یا گذرواژه نادرست است" in text(browser)
    shoot(browser, "login")
    for _ in range(5):
        sign_in(browser, url, "locked-out", "not the password")
    sign_in(browser, url, "locked-out")
    assert "۱۵ دقیقه قفل" in text(browser)

    # A viewer: masked addresses; a pause (forged) is 403; a POST without csrf_token is 403.
    sign_in(browser, url, "viewer")
    browser.get(f"{url}/members/M2010")
    assert "s***@example.com" in text(browser) and "sara@example.com" not in text(browser)
    post_form(
        browser,
        "/campaigns/whatever/pause",
        {"csrf_token": browser.find_element(By.NAME, "csrf_token").get_attribute("value")},
    )
    wait_for(browser, lambda b: "۴۰۳" in text(b), "the viewer's pause refused")
    browser.get(f"{url}/members")
    post_form(browser, "/members/M2010/consent", {"channel": "email", "opt_in": "0"})
    wait_for(browser, lambda b: "CSRF" in text(b), "a POST without csrf_token refused")
    assert consent_changes(engine) == []
    browser.get(f"{url}/campaigns")
    sign_out(browser)

    # An admin composes a draft with a template error, sees it, fixes it.
    sign_in(browser, url, "admin")
    browser.get(f"{url}/campaigns/new")
    fill(browser, "slug", "yalda-browser")
    fill(browser, "name", "حراج یلدا")
    fill(browser, "subject", "{{ member.first_name }}، حراج یلدا")
    fill(browser, "html", BROKEN)
    submit(browser, "form.compose button")
    wait_for(browser, lambda b: "template syntax error" in text(b), "the template's problem shown")
    shoot(browser, "draft-problem")
    fill(browser, "html", FIXED)
    submit(browser, "form.compose button")
    wait_for(browser, lambda b: "مشکلی پیدا نشد" in text(b), "the draft fixed")
    shoot(browser, "draft")

    # Preview it, then a test copy that reaches the SMTP server.
    browser.get(f"{url}/campaigns/yalda-browser/preview?member=C0001")
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.desktop")
    assert frame.get_attribute("sandbox") == ""
    shoot(browser, "preview")
    browser.get(f"{url}/campaigns/yalda-browser/edit")
    fill(browser, "to", "staff@shop.example")
    submit(browser, "form[action$='/test'] button")
    wait_for(browser, lambda b: "نسخهٔ آزمایشی" in text(b), "the test copy's report")
    copies = [m for m in smtp_server.messages() if m.rcpt_to == "staff@shop.example"]
    assert len(copies) == 1 and copies[0].parsed["Subject"].startswith("[آزمایشی]")

    # Schedule it in Jalali, a few seconds ahead; the scheduler launches it.
    fill(browser, "send_at", jalali_soon(6), "form[action$='/schedule']")
    submit(browser, "form[action$='/schedule'] button")
    wait_for(browser, lambda b: "زمان‌بندی شد" in text(b), "scheduled")
    browser.execute_script("window.notReloaded = true;")
    wait_for(
        browser,
        lambda b: (
            int(
                b.find_element(By.CSS_SELECTOR, "[data-channel=email] [data-bar]").get_attribute(
                    "value"
                )
                or 0
            )
            >= 1
        ),
        "progress moving without a reload",
    )
    assert browser.execute_script("return window.notReloaded") is True
    shoot(browser, "campaign-sending")

    # Pause: what was being sent finishes, nothing more goes.
    submit(browser, "form[action$='/pause'] button")
    wait_for(browser, lambda b: "کارزار متوقف شد" in text(b), "paused")
    deadline = time.monotonic() + WAIT
    while (
        counts(engine, "yalda-browser").get(DeliveryStatus.SENDING, 0)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)  # another process: polling the database is all there is
    held = counts(engine, "yalda-browser")
    assert held.get(DeliveryStatus.PENDING, 0) > 0, processes.logs()
    for _ in range(6):  # three scheduler ticks later, still held
        time.sleep(0.25)
        assert counts(engine, "yalda-browser") == held
    assert find(engine, "yalda-browser").state == "paused"
    smtp_server.delay_data(0.02, count=1000)  # the pause is proven: the rest need not crawl

    # Resume: it ends; the report shows its charts.
    submit(browser, "form[action$='/resume'] button")
    wait_for(
        browser,
        lambda b: "پایان‌یافته" in b.find_element(By.CSS_SELECTOR, "[data-progress-state]").text,
        "done " + processes.logs(),
    )
    browser.refresh()
    wait_for(
        browser,
        lambda b: b.execute_script("return document.documentElement.dataset.charts") == "ready",
        "charts drawn",
    )
    sent = [m for m in smtp_server.messages() if m.rcpt_to.startswith("member")]
    assert len({m.rcpt_to for m in sent}) == len(sent) == MEMBERS
    shoot(browser, "campaign-done")
    browser.get(f"{url}/campaigns")
    shoot(browser, "campaigns")

    # A member typed with Persian digits; opted out of email from the console.
    browser.get(f"{url}/members")
    fill(browser, "q", "۰۹۱۲۱۲۳۴۵۶۷")
    submit(browser, "form.filters button")
    browser.find_element(By.LINK_TEXT, "M2010").click()
    shoot(browser, "member")
    submit(browser, "button[value=email]")
    wait_for(browser, lambda b: "منبع: console" in text(b), "the consent history shows console")
    assert [(c.channel, c.source) for c in consent_changes(engine)] == [("email", "console")]

    # Export (what the download holds), then erase.
    exported = browser.execute_async_script(
        "const done = arguments[0]; fetch('/members/M2010/export').then(r => r.json()).then(done);"
    )
    assert exported["email"] == "sara@example.com"
    fill(browser, "confirm", "M2010")
    submit(browser, "form[action$='/erase'] button")
    wait_for(browser, lambda b: "پاک شد" in text(b), "erased")
    shoot(browser, "members")

    # Every action in the audit log.
    browser.get(f"{url}/audit")
    shoot(browser, "audit")
    browser.get(f"{url}/suppressions")
    shoot(browser, "suppressions")
    actions = {row["action"] for row in audit.events(engine)}
    assert {
        "login-failed",
        "login-locked",
        "login",
        "logout",
        "draft-create",
        "draft-edit",
        "campaign-test",
        "campaign-schedule",
        "campaign-pause",
        "campaign-resume",
        "member-consent",
        "member-export",
        "member-erase",
    } <= actions
    problems = [
        e
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE"
        and "403" not in e["message"]
        and "401" not in e["message"]
        and "429" not in e["message"]
    ]
    assert problems == []
