"""Drafts in the console: compose, the problems `validate` finds, preview, test copies,
scheduling under `campaign send`'s rules; and the same drafts as files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jdatetime
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dispatcher.definition.draft import Draft, read_file
from dispatcher.definition.persian import TEHRAN
from dispatcher.delivery.control import find
from dispatcher.queue.drafts import load_draft
from dispatcher.settings import Settings
from dispatcher.store import audit
from tests.console.conftest import token
from tests.factories import add_member

BROKEN = "<p>{{ member.first_name }} عزیز {% if %}</p>"
FIXED = "<p>{{ member.first_name }} عزیز، حراج یلدا</p>"
FORM = {
    "slug": "yalda-draft",
    "name": "حراج یلدا",
    "channels": ["email", "sms"],
    "subject": "{{ member.first_name }}، حراج یلدا",
    "html": FIXED,
    "sms_text": "{{ member.first_name }} عزیز، حراج یلدا",
    "tags": "newsletter",
}


def _jalali_in(days: int) -> str:
    moment = (datetime.now(UTC) + timedelta(days=days)).astimezone(TEHRAN)
    shown = jdatetime.datetime.fromgregorian(datetime=moment.replace(tzinfo=None))
    return shown.strftime("%Y-%m-%d 10:00").translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))


def _compose(client: TestClient, **fields: object) -> object:
    data = {**FORM, **fields, "csrf_token": token(client, "/campaigns/new")}
    return client.post("/campaigns", data=data)


def test_a_template_error_is_shown_with_its_line_then_fixed(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    add_member(engine, "M1", mobile="+989121234567")
    client = signed_in("marketer")
    page = _compose(client, html=BROKEN)
    assert page.status_code == 200  # followed to the editor
    assert "email.html:1: email.html: template syntax error" in page.text
    assert find(engine, "yalda-draft").state == "draft"
    data = {**FORM, "csrf_token": token(client, "/campaigns/yalda-draft/edit")}
    fixed = client.post("/campaigns/yalda-draft/edit", data=data)
    assert "template syntax error" not in fixed.text and "مشکلی پیدا نشد" in fixed.text
    assert 'data-audience="email">۱<' in fixed.text
    assert "بخش" in fixed.text  # the SMS's parts
    actions = [r["action"] for r in audit.events(engine)]
    assert actions[:2] == ["draft-edit", "draft-create"]


def test_a_viewer_cannot_compose(signed_in: Callable[[str], TestClient], engine: Engine) -> None:
    client = signed_in("viewer")
    assert _compose(client).status_code == 403  # type: ignore[attr-defined]


def test_the_preview_shows_the_email_sandboxed_and_the_sms(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    add_member(engine, "M1", first_name="سارا", mobile="+989121234567", tags=["newsletter"])
    client = signed_in("viewer")
    _compose(signed_in("marketer"))
    page = client.get("/campaigns/yalda-draft/preview?member=M1").text
    assert 'sandbox=""' in page and "srcdoc=" in page and "allow-scripts" not in page
    assert "سارا عزیز، حراج یلدا" in page
    assert 'class="bubble"' in page and "لغو11" in page
    assert "?member=M1" in page  # the varied sample, one click each


def test_a_test_copy_is_sent_and_nothing_recorded(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    client = signed_in("marketer")
    _compose(client, channels=["email"])
    answer = client.post(
        "/campaigns/yalda-draft/test",
        data={"to": "staff@shop.example", "csrf_token": token(client)},
    )
    assert "نسخهٔ آزمایشی" in answer.text and "sent" in answer.text
    sent = list((console_settings.outbox_dir / "email").glob("*.eml"))
    assert len(sent) == 1 and "staff@shop.example" in sent[0].read_text()
    assert find(engine, "yalda-draft").state == "draft"


def test_scheduling_in_jalali_makes_the_draft_a_scheduled_campaign(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    add_member(engine, "M1")
    client = signed_in("marketer")
    _compose(client, channels=["email"])
    draft_id = find(engine, "yalda-draft").id
    when = _jalali_in(2)
    answer = client.post(
        "/campaigns/yalda-draft/schedule", data={"send_at": when, "csrf_token": token(client)}
    )
    assert "کارزار زمان‌بندی شد" in answer.text
    campaign = find(engine, "yalda-draft")
    assert (campaign.id, campaign.state) == (draft_id, "scheduled")
    assert campaign.send_at is not None
    local = campaign.send_at.replace(tzinfo=UTC).astimezone(TEHRAN)
    assert (local.hour, local.minute) == (10, 0)
    assert audit.events(engine)[0]["action"] == "campaign-schedule"


def test_a_past_time_and_an_empty_audience_are_refused(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    client = signed_in("marketer")
    _compose(client, channels=["email"])
    empty = client.post(
        "/campaigns/yalda-draft/schedule",
        data={"send_at": _jalali_in(2), "csrf_token": token(client)},
    )
    assert empty.status_code == 409 and "no member is in its audience" in empty.text
    add_member(engine, "M1")
    past = client.post(
        "/campaigns/yalda-draft/schedule",
        data={"send_at": _jalali_in(-2), "csrf_token": token(client)},
    )
    assert past.status_code == 409 and "which has passed" in past.text
    assert find(engine, "yalda-draft").state == "draft"


def test_a_draft_exported_and_imported_is_the_same_draft(engine: Engine, tmp_path: Path) -> None:
    draft = Draft.from_form({**FORM, "from": "Shop <news@shop.example>"}, ["email", "sms"])
    path = draft.write(tmp_path / "out")
    assert read_file(path) == draft
    spec, problems = draft.check()
    assert problems == [] and spec is not None and spec.email is not None
    assert spec.email.from_addr == "Shop <news@shop.example>"


def test_an_uploaded_campaign_file_becomes_a_draft(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    client = signed_in("marketer")
    content = Draft.from_form(FORM, ["sms"]).files()["campaign.toml"].encode()
    client.post(
        "/campaigns/import",
        data={"csrf_token": token(client)},
        files={"file": ("yalda.toml", content, "application/toml")},
    )
    _campaign, draft = load_draft(engine, "yalda-draft")
    assert draft.channels == ["sms"] and draft.name == "حراج یلدا"
