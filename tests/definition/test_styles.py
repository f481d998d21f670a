"""`<style>` rules inlined at compile time: nothing linked is ever fetched, the `<link>`
stays as written, the doctype comes first, a refusal of css-inline is a problem."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import css_inline
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from dispatcher.definition.campaign import load_campaign
from dispatcher.errors import CampaignError
from tests.factories import write_campaign

URL = "https://shop.example/u/token"
MEMBER = {"first_name": "مریم", "email": "m@example.com", "tags": []}


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        body = b"p { color: rgb(1, 2, 3); }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def css_host() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on localhost that serves CSS and records every request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_linked_stylesheet_is_never_fetched_and_the_link_is_kept_as_written(
    css_host: ThreadingHTTPServer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.css"
    secret.write_text("p { color: rgb(9, 9, 9); }", encoding="utf-8")
    port = css_host.server_address[1]
    remote = f"<link rel=stylesheet href='http://127.0.0.1:{port}/{{{{ member.first_name }}}}.css'>"
    local = f'<link rel="stylesheet" href="{secret}">'
    html = (
        '{% extends "email_layout.html" %}{% block content %}\n'
        f"<style>.a {{ font-weight: bold }}</style>{remote}{local}\n"
        '<p class="a">سلام</p>{% endblock %}'
    )
    spec = load_campaign(write_campaign(tmp_path / "c", html=html))
    out = spec.templates({"name": "shop"}).render_email(MEMBER, URL).html

    assert css_host.requests == []  # type: ignore[attr-defined]
    assert f"<link rel=stylesheet href='http://127.0.0.1:{port}/مریم.css'>" in out
    assert local in out
    assert "rgb(" not in out  # neither stylesheet was read
    assert '<p class="a" style="font-weight: bold;">سلام</p>' in out


def test_css_inline_refusing_the_html_is_a_problem_at_the_style_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuses(*args: object, **kwargs: object) -> str:
        raise css_inline.InlineError("cannot parse the document")

    monkeypatch.setattr(css_inline, "inline_fragment", refuses)  # the library's answer
    html = "<p>یک</p>\n\n<style>p { color: red }</style>\n<p>دو</p>\n"
    path = write_campaign(tmp_path / "c", html=html)
    with pytest.raises(CampaignError) as caught:
        load_campaign(path)
    [problem] = caught.value.problems
    assert problem == (
        f"{tmp_path / 'c' / 'email.html'}:3: email.html: the <style> cannot be inlined: "
        "cannot parse the document"
    )


STYLED = """{% extends "email_layout.html" %}{% block content %}
<style>.price { color: #c00 }</style>
<p class="price">۱۲۰٬۰۰۰ تومان</p>
{% endblock %}
"""


def test_the_doctype_comes_before_a_style_block(tmp_path: Path) -> None:
    for html in (STYLED, '<style>.price { color: #c00 }</style><p class="price">x</p>'):
        spec = load_campaign(write_campaign(tmp_path / str(len(html)), html=html))
        out = spec.templates({"name": "shop"}).render_email(MEMBER, URL).html
        assert out.startswith("<!doctype html>")
        assert "<style>.price { color: #c00 }</style>" in out
        assert 'class="price" style="color: #c00;"' in out


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    """Debian's headless Chromium through its chromedriver (scripts/services installs them)."""
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver_path is None:  # pragma: no cover - environment problem
        pytest.fail("chromium and chromium-driver are needed: run scripts/services")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_a_styled_email_renders_in_standards_mode_in_chromium(
    chromium: WebDriver, tmp_path: Path
) -> None:
    spec = load_campaign(write_campaign(tmp_path / "c", html=STYLED))
    page = tmp_path / "email.html"
    page.write_text(spec.templates({"name": "shop"}).render_email(MEMBER, URL).html, "utf-8")
    chromium.get(page.as_uri())
    assert chromium.execute_script("return document.compatMode") == "CSS1Compat"
