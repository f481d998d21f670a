"""Members in the console: search as typed, masked unless admin, consent with source
`console`, CSV import, export and erasure (admin only)."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from dispatcher.audience.addresses import address_keys
from dispatcher.audience.consent import consent_changes
from dispatcher.audience.suppression import fill_missing_keys
from dispatcher.settings import Settings
from dispatcher.store import audit
from dispatcher.store.models import Member
from tests.console.conftest import token
from tests.factories import add_member


def _member(engine: Engine, settings: Settings) -> int:
    member = add_member(engine, "M1001", email="Sara.Ahmadi@Example.com", mobile="+989121234567")
    with engine.begin() as conn:
        fill_missing_keys(conn, address_keys(settings))
    assert member.id is not None
    return member.id


def test_a_member_is_found_by_mobile_typed_with_persian_digits(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    client = signed_in("viewer")
    for typed in ("۰۹۱۲۱۲۳۴۵۶۷", "+98 912 123 4567", "sara.ahmadi@example.COM", "M۱۰۰۱"):
        page = client.get("/members", params={"q": typed}).text
        assert 'href="/members/M1001"' in page, typed


def test_a_viewer_sees_masked_addresses_and_an_admin_whole_ones(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    viewer = signed_in("viewer").get("/members/M1001").text
    assert "S***@Example.com" in viewer and "+98912***4567" in viewer
    assert "Sara.Ahmadi" not in viewer and "1234567" not in viewer
    admin = signed_in("admin").get("/members/M1001").text
    assert "Sara.Ahmadi@Example.com" in admin and "+989121234567" in admin


def test_an_opt_out_in_the_console_has_source_console_and_is_audited(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    member_id = _member(engine, console_settings)
    client = signed_in("marketer")
    page = client.post(
        "/members/M1001/consent",
        data={"channel": "sms", "opt_in": "0", "csrf_token": token(client, "/members/M1001")},
    )
    assert page.status_code == 200 and 'data-consent="sms">لغو عضویت<' in page.text
    changes = consent_changes(engine)
    assert [(c.external_id, c.channel, c.opt_in, c.source) for c in changes] == [
        ("M1001", "sms", False, "console")
    ]
    row = audit.events(engine)[0]
    assert (row["actor"], row["action"], row["member_id"]) == (
        "marketer",
        "member-consent",
        member_id,
    )


def test_a_viewer_cannot_change_consent(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    client = signed_in("viewer")
    answer = client.post(
        "/members/M1001/consent",
        data={"channel": "sms", "opt_in": "0", "csrf_token": token(client, "/members/M1001")},
    )
    assert answer.status_code == 403 and consent_changes(engine) == []


def test_only_an_admin_exports_and_it_is_members_export(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    assert signed_in("marketer").get("/members/M1001/export").status_code == 403
    answer = signed_in("admin").get("/members/M1001/export")
    assert answer.headers["cache-control"] == "no-store"
    assert json.loads(answer.text)["email"] == "Sara.Ahmadi@Example.com"
    assert audit.events(engine)[0]["action"] == "member-export"


def test_erasure_needs_the_id_typed_again(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    client = signed_in("admin")
    refused = client.post(
        "/members/M1001/erase", data={"confirm": "M1002", "csrf_token": token(client)}
    )
    assert refused.status_code == 400
    done = client.post(
        "/members/M1001/erase", data={"confirm": "M1001", "csrf_token": token(client)}
    )
    assert "پاک شد" in done.text
    with Session(engine) as session:
        assert session.exec(select(Member)).all() == []
    assert audit.events(engine)[0]["action"] == "member-erase"


def test_a_csv_import_reports_line_by_line(
    signed_in: Callable[[str], TestClient], engine: Engine
) -> None:
    client = signed_in("admin")
    csv = "external_id,email,mobile\nA1,a1@example.com,09121234567\nA2,not-an-email,\n"
    page = client.post(
        "/members/import",
        data={"csrf_token": token(client, "/members")},
        files={"file": ("members.csv", csv.encode(), "text/csv")},
    ).text
    assert "۱ تازه" in page and "۱ رد شده" in page
    assert "members.csv:3: email" in page
    assert audit.events(engine)[0]["action"] == "members-import"


def test_the_audit_page_is_for_admins(signed_in: Callable[[str], TestClient]) -> None:
    assert signed_in("marketer").get("/audit").status_code == 403
    page = signed_in("admin").get("/audit").text
    assert "login" in page


def test_the_suppressions_page_counts_and_an_admin_lifts_one(
    signed_in: Callable[[str], TestClient], engine: Engine, console_settings: Settings
) -> None:
    _member(engine, console_settings)
    client = signed_in("admin")
    client.post(
        "/members/M1001/consent",
        data={"channel": "email", "opt_in": "0", "csrf_token": token(client, "/members/M1001")},
    )
    page = client.get("/suppressions").text
    assert "optout" in page and "<td>۱</td>" in page
    lifted = client.post(
        "/suppressions/lift",
        data={
            "channel": "email",
            "address": "sara.ahmadi@example.com",
            "csrf_token": token(client),
        },
    )
    assert "مسدودی برداشته شد" in lifted.text
    assert audit.events(engine)[0]["action"] == "suppression-lift"
