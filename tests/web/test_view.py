"""`GET /v/{token}`: the "نسخهٔ وب" link above every email shows that recipient's copy,
changes nothing, keeps working after the campaign is done; a bad token gets the 400
page. Real SMTP server, real app, SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session, select
from starlette.testclient import TestClient

from dispatcher.delivery.control import find, finish_if_done
from dispatcher.store.models import ConsentEvent, Member
from dispatcher.web import create_app
from tests.factories import Harness, add_member, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

Pipeline = Callable[..., Harness]
HTML = """{% extends "email_layout.html" %}{% block content %}
<h1>حراج یلدا، {{ member.first_name }}</h1>{% endblock %}"""


def sent_email(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> tuple[Harness, str]:
    h = pipeline(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none")
    add_member(h.engine, "C1", email="maryam@example.com", first_name="مریم")
    h.send(write_campaign(tmp_path / "c", html=HTML))
    h.run_workers()
    campaign = find(h.engine, "yalda-test")
    assert campaign.id is not None and finish_if_done(h.engine, campaign.id)
    [mail] = smtp_server.wait_for(1)
    html = mail.parsed.get_body(("html",)).get_content()
    return h, html


def test_every_email_links_its_web_copy_above_the_content(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    _, html = sent_email(pipeline, smtp_server, tmp_path)
    link = re.search(r'<a href="(https://shop\.example/v/[\w-]+)"[^>]*>نسخهٔ وب</a>', html)
    assert link is not None
    assert html.index("نسخهٔ وب") < html.index("حراج یلدا، مریم")


def test_the_web_copy_is_the_recipients_email_and_changes_nothing(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h, html = sent_email(pipeline, smtp_server, tmp_path)
    link = re.search(r'href="https://shop\.example(/v/[\w-]+)"', html)
    unsubscribe = re.search(r'href="https://shop\.example(/u/[\w-]+)"', html)
    assert link is not None and unsubscribe is not None
    with TestClient(create_app(h.settings)) as client:
        page = client.get(link.group(1))
        other = client.get(unsubscribe.group(1))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "حراج یلدا، مریم" in page.text and 'dir="rtl"' in page.text
        assert unsubscribe.group(1) in page.text  # the same unsubscribe link as the email
        assert "نسخهٔ وب" not in page.text
        for name in ("content-security-policy", "x-content-type-options", "referrer-policy"):
            assert page.headers[name] == other.headers[name]
        assert client.get(link.group(1)).text == page.text  # again: same page

        # A tampered token gets the same 400 page as a tampered unsubscribe link; the
        # unsubscribe token does not open the copy, nor the copy's token unsubscribe.
        token = link.group(1).rsplit("/", 1)[1]
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
        bad = client.get(f"/v/{tampered}")
        bad_u = client.get(f"/u/{tampered}")
        assert (bad.status_code, bad.text) == (400, bad_u.text)
        assert client.get("/v/" + unsubscribe.group(1).rsplit("/", 1)[1]).status_code == 400
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    with Session(h.engine) as session:
        assert session.exec(select(ConsentEvent)).all() == []
        member = session.exec(select(Member)).one()
        assert member.email_opt_in
