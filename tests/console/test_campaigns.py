"""The campaign pages: the list, one campaign's progress, and its controls, by role and
with the CSRF token checked before anything changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dispatcher.audience.addresses import address_keys
from dispatcher.definition.campaign import load_campaign
from dispatcher.delivery.control import find
from dispatcher.delivery.status import progress
from dispatcher.queue.expansion import expand
from dispatcher.settings import Settings
from dispatcher.store import audit
from tests.console.conftest import token
from tests.factories import add_member, write_campaign

SLUG = "yalda-console"


@pytest.fixture
def sending(engine: Engine, console_settings: Settings, tmp_path: Path) -> int:
    """A campaign being sent to three members (its deliveries pending)."""
    for ext in ("C1", "C2", "C3"):
        add_member(engine, ext)
    spec = load_campaign(write_campaign(tmp_path / "c", slug=SLUG))
    result = expand(engine, spec, keys=address_keys(console_settings))
    assert result.campaign.id is not None
    return result.campaign.id


def test_the_list_shows_each_campaign_with_its_progress_in_persian(
    signed_in: Callable[[str], TestClient], sending: int
) -> None:
    page = signed_in("viewer").get("/campaigns").text
    assert SLUG in page and "در حال ارسال" in page
    assert "۰ از ۳" in page  # sent of audience, Persian digits


def test_the_list_filters_by_state(signed_in: Callable[[str], TestClient], sending: int) -> None:
    client = signed_in("viewer")
    assert SLUG in client.get("/campaigns?state=sending").text
    assert SLUG not in client.get("/campaigns?state=done").text


def test_the_campaign_page_has_every_count_of_status(
    signed_in: Callable[[str], TestClient], sending: int
) -> None:
    page = signed_in("viewer").get(f"/campaigns/{SLUG}").text
    for label in ("در انتظار", "ارسال‌شده", "ناموفق", "برگشتی", "شکایت", "حذف‌شده از فهرست"):
        assert label in page
    assert 'data-count="pending">۳<' in page
    assert "<bdi>لغو عضویت کرده</bdi>" in page  # excluded_by, in Persian
    assert "<bdi>opted_out</bdi>" not in page


def test_progress_is_one_small_json(signed_in: Callable[[str], TestClient], sending: int) -> None:
    answer = signed_in("viewer").get(f"/campaigns/{SLUG}/progress")
    assert answer.json() == {
        "state": "sending",
        "email": {"pending": 3, "sending": 0, "sent": 0, "skipped": 0, "failed": 0},
    }


def test_a_marketer_pauses_and_resumes_and_each_is_audited(
    signed_in: Callable[[str], TestClient], sending: int, engine: Engine
) -> None:
    client = signed_in("marketer")
    answer = client.post(f"/campaigns/{SLUG}/pause", data={"csrf_token": token(client)})
    assert answer.status_code == 200 and "کارزار متوقف شد" in answer.text
    assert find(engine, SLUG).state == "paused"
    client.post(f"/campaigns/{SLUG}/resume", data={"csrf_token": token(client)})
    assert find(engine, SLUG).state == "sending"
    rows = audit.events(engine)
    assert [(r["action"], r["actor"], r["campaign_id"]) for r in rows[:2]] == [
        ("campaign-resume", "marketer", sending),
        ("campaign-pause", "marketer", sending),
    ]
    assert rows[0]["address"] == "testclient"


def test_a_link_from_elsewhere_puts_no_words_on_the_consoles_pages(
    signed_in: Callable[[str], TestClient], sending: int
) -> None:
    client = signed_in("marketer")
    forged = "حساب شما مسدود شد؛ به evil.example بروید"
    for query in ({"ok": forged}, {"ok": forged, "okt": "0" * 32}):
        page = client.get(f"/campaigns/{SLUG}", params=query)
        assert page.status_code == 200 and "evil.example" not in page.text
    # The notice an action sends is shown, once signed for this session.
    answer = client.post(f"/campaigns/{SLUG}/pause", data={"csrf_token": token(client)})
    assert "کارزار متوقف شد" in answer.text
    assert "کارزار متوقف شد" not in signed_in("admin").get(str(answer.url)).text


def test_a_viewer_cannot_pause(
    signed_in: Callable[[str], TestClient], sending: int, engine: Engine
) -> None:
    client = signed_in("viewer")
    answer = client.post(f"/campaigns/{SLUG}/pause", data={"csrf_token": token(client)})
    assert answer.status_code == 403
    assert find(engine, SLUG).state == "sending"
    assert "توقف</button>" not in client.get(f"/campaigns/{SLUG}").text


@pytest.mark.parametrize("sent", [None, "wrong-token"])
def test_a_post_without_the_right_csrf_token_is_403_and_changes_nothing(
    signed_in: Callable[[str], TestClient], sending: int, engine: Engine, sent: str | None
) -> None:
    client = signed_in("admin")
    data = {} if sent is None else {"csrf_token": sent}
    answer = client.post(f"/campaigns/{SLUG}/pause", data=data)
    assert answer.status_code == 403
    assert find(engine, SLUG).state == "sending"
    assert not [r for r in audit.events(engine) if r["action"] == "campaign-pause"]


def test_cancel_needs_its_confirmation(
    signed_in: Callable[[str], TestClient], sending: int, engine: Engine
) -> None:
    client = signed_in("marketer")
    refused = client.post(f"/campaigns/{SLUG}/cancel", data={"csrf_token": token(client)})
    assert refused.status_code == 400 and find(engine, SLUG).state == "sending"
    client.post(f"/campaigns/{SLUG}/cancel", data={"csrf_token": token(client), "confirm": "yes"})
    assert find(engine, SLUG).state == "cancelled"


def test_the_unsent_csv_is_the_reports(
    signed_in: Callable[[str], TestClient], sending: int, engine: Engine
) -> None:
    client = signed_in("marketer")
    client.post(f"/campaigns/{SLUG}/cancel", data={"csrf_token": token(client), "confirm": "yes"})
    csv = client.get(f"/campaigns/{SLUG}/report.csv").text.splitlines()
    assert csv[0] == "external_id,channel,address,status,reason"
    assert sorted(line.split(",")[0] for line in csv[1:]) == ["C1", "C2", "C3"]
    assert "c***@example.com" in csv[1]


def test_the_progress_refresh_is_one_query(engine: Engine, sending: int) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        found = progress(engine, SLUG)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert found is not None and found["email"]["pending"] == 3
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_a_sent_campaigns_preview_chooses_its_varied_sample_only_when_asked(
    signed_in: Callable[[str], TestClient], sending: int
) -> None:
    client = signed_in("viewer")
    plain = client.get(f"/campaigns/{SLUG}/preview").text
    assert "srcdoc=" in plain and "?member=C1" not in plain and "?samples=1" in plain
    asked = client.get(f"/campaigns/{SLUG}/preview?samples=1").text
    assert "?member=C1" in asked
