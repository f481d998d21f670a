"""The shop's API (in-process; once under uvicorn) on SQLite and PostgreSQL:
keys, upsert and its 422s, batch, consent, the consent feed, limits, the description."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.testclient import TestClient

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.tokens import TokenSigner
from dispatcher.definition.campaign import load_campaign
from dispatcher.queue.expansion import expand
from dispatcher.store.apikeys import create_key, revoke_key
from dispatcher.store.models import Campaign, Channel, ConsentEvent, Delivery, Member, MemberTag
from tests.api.conftest import SECRET
from tests.cli.helpers import run
from tests.factories import add_member, write_campaign
from tests.servers.app_server import AppServer


def member(engine: Engine, external_id: str) -> Member | None:
    with Session(engine) as session:
        return session.exec(select(Member).where(Member.external_id == external_id)).first()


def tags(engine: Engine, member_id: int | None) -> set[str]:
    with Session(engine) as session:
        rows = session.exec(select(MemberTag.tag).where(MemberTag.member_id == member_id))
        return set(rows)


# ----------------------------------------------------------------------------- keys


def test_a_key_made_by_the_command_opens_the_api_under_uvicorn_until_it_is_revoked(
    uvicorn_api: AppServer, database_url: str, workdir: Path
) -> None:
    made = run(workdir, "api-key", "create", "shop-web", DATABASE_URL=database_url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("dsp_") and "keep it now" in made.stderr
    url = f"{uvicorn_api.url}/api/v1/consent-changes"

    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listed = run(workdir, "api-key", "list", DATABASE_URL=database_url)
    assert "shop-web" in listed.stdout and key not in listed.stdout

    revoked = run(workdir, "api-key", "revoke", "shop-web", DATABASE_URL=database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_missing_wrong_and_revoked_keys_get_the_same_401(
    api_server: TestClient, engine: Engine
) -> None:
    revoked = create_key(engine, "old")
    revoke_key(engine, "old")
    url = "/api/v1/members/C1"
    answers = [
        api_server.get(url),
        api_server.get(url, headers={"Authorization": "Bearer dsp_wrong"}),
        api_server.get(url, headers={"Authorization": f"Bearer {revoked}"}),
        api_server.get(url, headers={"Authorization": f"Basic {revoked}"}),
    ]
    assert {a.status_code for a in answers} == {401}
    assert len({a.content for a in answers}) == 1
    assert answers[0].headers["www-authenticate"] == "Bearer"


# ---------------------------------------------------------------------------- upsert


def test_put_creates_a_member_normalised_as_the_import_does(
    api: httpx.Client, engine: Engine
) -> None:
    answer = api.put(
        "/api/v1/members/C1",
        json={
            "first_name": "  مریم  ",
            "email": "Maryam@Example.COM",
            "mobile": "۰۹۱۲ ۱۲۳ ۴۵۶۷",
            "tags": ["newsletter", "vip"],
        },
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {
        "external_id": "C1",
        "created": True,
        "changed": True,
        "kept_opted_out": False,
    }
    found = member(engine, "C1")
    assert found is not None
    assert (found.first_name, found.email, found.mobile) == (
        "مریم",
        "Maryam@example.com",
        "+989121234567",
    )
    assert tags(engine, found.id) == {"newsletter", "vip"}

    again = api.put("/api/v1/members/C1", json={"mobile": "+98 935 123 4567"})
    assert again.status_code == 200
    assert again.json()["created"] is False
    updated = member(engine, "C1")
    assert updated is not None
    assert updated.mobile == "+989351234567" and updated.email == "Maryam@example.com"


def test_put_with_bad_fields_names_each_masks_the_address_and_changes_nothing(
    api: httpx.Client, engine: Engine
) -> None:
    api.put("/api/v1/members/C1", json={"email": "ok@example.com"})
    answer = api.put(
        "/api/v1/members/C1",
        json={"email": "ali.rezaei@@example.com", "mobile": "02188776655", "first_name": "x"},
    )
    assert answer.status_code == 422
    errors = {e["field"]: e["reason"] for e in answer.json()["errors"]}
    assert set(errors) == {"email", "mobile"}
    assert "ali.rezaei" not in errors["email"] and "***" in errors["email"]
    assert "landline" in errors["mobile"] and "02188776655" not in errors["mobile"]
    found = member(engine, "C1")
    assert found is not None and found.email == "ok@example.com" and found.first_name == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email_opt_in": "yes"}, "email_opt_in"),
        ({"unknown": 1}, "unknown"),
        ({"tags": ["a;b"]}, "tags.0"),
        ({"external_id": "C2"}, "external_id"),
    ],
)
def test_put_refuses_what_the_model_does_not_allow(
    api: httpx.Client, body: dict[str, object], field: str
) -> None:
    answer = api.put("/api/v1/members/C1", json=body)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_put_with_a_too_long_id_or_no_json_is_refused(api: httpx.Client) -> None:
    long = api.put(f"/api/v1/members/{'x' * 65}", json={})
    assert long.status_code == 422
    assert long.json()["errors"][0]["field"] == "external_id"
    assert api.put("/api/v1/members/C1", content=b"{not json").status_code == 400


# ----------------------------------------------------------------------------- batch


def test_a_batch_applies_the_valid_records_and_reports_the_others_as_the_import_does(
    api: httpx.Client, engine: Engine
) -> None:
    records = [
        {"external_id": "B1", "email": "b1@example.com"},
        {"external_id": "B2", "email": "not-an-address"},
        {"external_id": "B1", "email": "again@example.com"},
        {"email": "noid@example.com"},
        {"external_id": "B3", "sms_opt_in": 1},
        {"external_id": "B4", "mobile": "09121234567", "tags": ["sms"]},
        "B5",
    ]
    answer = api.post("/api/v1/members/batch", json={"members": records})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["applied"] == 2
    assert [(e["index"], e["external_id"], e["field"]) for e in body["errors"]] == [
        (1, "B2", "email"),
        (2, "B1", "external_id"),
        (3, None, "external_id"),
        (4, "B3", "sms_opt_in"),
        (6, None, "member"),
    ]
    assert "first at index 0" in body["errors"][1]["reason"]
    assert "not-an-address" not in answer.text
    assert member(engine, "B1") is not None and member(engine, "B4") is not None
    assert member(engine, "B2") is None


def test_a_batch_over_a_thousand_records_is_refused_whole(
    api: httpx.Client, engine: Engine
) -> None:
    records = [{"external_id": f"B{i}"} for i in range(1001)]
    answer = api.post("/api/v1/members/batch", json={"members": records})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "members"
    assert member(engine, "B1") is None


def test_a_body_over_one_mebibyte_gets_413(api: httpx.Client) -> None:
    padding = "x" * (1024 * 1024)
    answer = api.post("/api/v1/members/batch", json={"members": [], "pad": padding})
    assert answer.status_code == 413


# --------------------------------------------------------------------------- consent


def test_a_consent_patch_opts_out_stickily_and_back_in(api: httpx.Client, engine: Engine) -> None:
    api.put("/api/v1/members/C1", json={"email": "c1@example.com"})
    out = api.patch("/api/v1/members/C1/consent", json={"channel": "email", "opt_in": False})
    assert out.status_code == 200
    assert out.json() == {"external_id": "C1", "channel": "email", "opt_in": False, "changed": True}

    # An opt-out through the API is the member's own decision: a PUT cannot undo it.
    put = api.put("/api/v1/members/C1", json={"email_opt_in": True})
    assert put.json()["kept_opted_out"] is True
    found = member(engine, "C1")
    assert found is not None and not found.email_opt_in and found.email_optout_source == "api"

    back = api.patch("/api/v1/members/C1/consent", json={"channel": "email", "opt_in": True})
    assert back.json()["changed"] is True
    found = member(engine, "C1")
    assert found is not None and found.email_opt_in and found.email_optout_source is None


def test_a_consent_patch_for_an_unknown_member_or_channel_is_refused(api: httpx.Client) -> None:
    unknown = api.patch("/api/v1/members/nobody/consent", json={"channel": "sms", "opt_in": False})
    assert unknown.status_code == 404
    api.put("/api/v1/members/C1", json={})
    bad = api.patch("/api/v1/members/C1/consent", json={"channel": "fax", "opt_in": False})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "channel"


# ------------------------------------------------------------------------------ feed


def test_the_feed_resumes_from_its_cursor_across_a_one_click_opt_out_on_the_unsubscribe_server(
    api: httpx.Client, engine: Engine, start_server: Callable[..., TestClient]
) -> None:
    api.put("/api/v1/members/C1", json={"email": "c1@example.com"})
    api.put("/api/v1/members/C2", json={"email": "c2@example.com"})
    api.patch("/api/v1/members/C2/consent", json={"channel": "email", "opt_in": False})
    first = api.get("/api/v1/consent-changes").json()
    assert [(c["external_id"], c["opt_in"], c["source"]) for c in first["changes"]] == [
        ("C2", False, "api")
    ]
    cursor = first["cursor"]
    assert api.get("/api/v1/consent-changes", params={"after": cursor}).json()["changes"] == []

    unsubscribe = start_server("unsubscribe_server:app")
    found = member(engine, "C1")
    assert found is not None and found.id is not None
    token = TokenSigner([SECRET.encode()]).sign(found.id, Channel.EMAIL)
    clicked = unsubscribe.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert clicked.status_code == 200

    page = api.get("/api/v1/consent-changes", params={"after": cursor}).json()
    assert [
        (c["external_id"], c["channel"], c["opt_in"], c["source"]) for c in page["changes"]
    ] == [("C1", "email", False, "one-click")]
    assert page["changes"][0]["at"].endswith("+00:00")
    after = api.get("/api/v1/consent-changes", params={"after": page["cursor"]}).json()
    assert after == {"changes": [], "cursor": page["cursor"]}


def test_the_feed_pages_with_its_limit_and_refuses_a_forged_cursor(api: httpx.Client) -> None:
    api.post(
        "/api/v1/members/batch",
        json={"members": [{"external_id": f"C{i}", "sms_opt_in": False} for i in range(5)]},
    )
    for i in range(5):
        api.patch(f"/api/v1/members/C{i}/consent", json={"channel": "sms", "opt_in": True})
    seen, cursor = [], None
    while True:
        params = {"limit": "2", **({"after": cursor} if cursor else {})}
        page = api.get("/api/v1/consent-changes", params=params).json()
        if not page["changes"]:
            break
        seen += [c["external_id"] for c in page["changes"]]
        cursor = page["cursor"]
    assert seen == [f"C{i}" for i in range(5)]
    assert api.get("/api/v1/consent-changes", params={"after": "nonsense"}).status_code == 400
    assert api.get("/api/v1/consent-changes", params={"limit": "0"}).status_code == 422


# ------------------------------------------------------------------- limits and docs


def test_each_key_is_rate_limited(start_server: Callable[..., TestClient], engine: Engine) -> None:
    server = start_server(API_RATE_LIMIT="0.01")  # one request per 100 s, bursts of one
    other = create_key(engine, "other")
    key = create_key(engine, "shop-web")
    url = "/api/v1/consent-changes"
    assert server.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    limited = server.get(url, headers={"Authorization": f"Bearer {key}"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 60
    assert server.get(url, headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_the_openapi_description_lists_every_endpoint(api: httpx.Client) -> None:
    spec = api.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    assert set(paths["/api/v1/members/{external_id}"]) >= {"put", "get", "delete"}
    assert "patch" in paths["/api/v1/members/{external_id}/consent"]
    assert "post" in paths["/api/v1/members/batch"]
    assert "get" in paths["/api/v1/consent-changes"]
    assert "email_opt_in" in spec["components"]["schemas"]["MemberFields"]["properties"]


def test_consent_events_of_the_api_carry_source_api(api: httpx.Client, engine: Engine) -> None:
    api.put("/api/v1/members/C1", json={})
    api.patch("/api/v1/members/C1/consent", json={"channel": "sms", "opt_in": False})
    with Session(engine) as session:
        assert [e.source for e in session.exec(select(ConsentEvent))] == ["api"]


# ---------------------------------------------------------- data access and erasure


def add_delivery(
    engine: Engine, member_id: int | None, channel: str = "email", status: str = "sent"
) -> int:
    """A delivery of campaign `yalda-test` (created on first use) to the member."""
    with Session(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == "yalda-test")).first()
        if campaign is None:
            campaign = Campaign(slug="yalda-test", name="حراج یلدا", channels="email,sms")
            session.add(campaign)
            session.flush()
        assert campaign.id is not None and member_id is not None
        delivery = Delivery(
            campaign_id=campaign.id,
            member_id=member_id,
            channel=channel,
            status=status,
            provider_id="8792343",
            error_message="550 5.1.1 <x@example.com> unknown" if status == "sent" else None,
        )
        session.add(delivery)
        session.commit()
        assert delivery.id is not None
        return delivery.id


def test_get_member_answers_with_everything_stored_and_the_command_prints_the_same(
    api: httpx.Client, engine: Engine, database_url: str, workdir: Path
) -> None:
    api.put(
        "/api/v1/members/C1",
        json={"first_name": "مریم", "email": "c1@example.com", "tags": ["vip"]},
    )
    api.patch("/api/v1/members/C1/consent", json={"channel": "sms", "opt_in": False})
    found = member(engine, "C1")
    assert found is not None
    add_delivery(engine, found.id)

    answer = api.get("/api/v1/members/C1")
    assert answer.status_code == 200
    data = answer.json()
    assert (data["external_id"], data["first_name"], data["email"], data["tags"]) == (
        "C1",
        "مریم",
        "c1@example.com",
        ["vip"],
    )
    assert data["consent"] == {
        "email": {"opt_in": True, "optout_source": None, "suppressed": None},
        "sms": {"opt_in": False, "optout_source": "api", "suppressed": None},
    }
    assert [(h["channel"], h["opt_in"], h["source"]) for h in data["consent_history"]] == [
        ("sms", False, "api")
    ]
    assert [(d["campaign"], d["channel"], d["status"]) for d in data["deliveries"]] == [
        ("yalda-test", "email", "sent")
    ]
    printed = run(workdir, "members", "export", "C1", DATABASE_URL=database_url)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == data
    assert api.get("/api/v1/members/nobody").status_code == 404


def test_erasure_leaves_anonymous_counts_and_no_address_in_the_sqlite_files(
    api: httpx.Client, engine: Engine, database_url: str
) -> None:
    address, mobile = "erase.me.please@example.com", "+989121234599"
    api.put("/api/v1/members/GONE", json={"email": address, "mobile": mobile, "tags": ["x"]})
    api.put("/api/v1/members/GONE", json={"first_name": "Erased Person"})  # an old version
    api.patch("/api/v1/members/GONE/consent", json={"channel": "email", "opt_in": False})
    api.put("/api/v1/members/STAYS", json={"email": "stays@example.com"})
    found = member(engine, "GONE")
    assert found is not None
    sent, pending = add_delivery(engine, found.id), add_delivery(engine, found.id, "sms", "pending")

    answer = api.delete("/api/v1/members/GONE")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "erased": "GONE",
        "deliveries_anonymised": 2,
        "pending_skipped": 1,
        "consent_events_anonymised": 1,
    }
    assert api.get("/api/v1/members/GONE").status_code == 404
    assert api.delete("/api/v1/members/GONE").status_code == 404
    with Session(engine) as session:
        kept = {d.id: d for d in session.exec(select(Delivery))}
        events = list(session.exec(select(ConsentEvent)))
    assert (kept[sent].member_id, kept[sent].status) == (None, "sent")
    assert (kept[pending].member_id, kept[pending].status) == (None, "skipped")
    assert [(e.member_id, e.channel, e.opted_in) for e in events] == [(None, "email", False)]
    feed = api.get("/api/v1/consent-changes").json()["changes"]
    assert [c["external_id"] for c in feed] == [None]
    assert member(engine, "STAYS") is not None

    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, *path.parent.glob(path.name + "-*")]
        for needle in (address, mobile, "Erased Person", "erase.me", "<x@example.com>"):
            for file in files:
                assert needle.encode() not in file.read_bytes(), (needle, file.name)


def test_the_erase_command_erases_as_the_api_does(
    engine: Engine, database_url: str, workdir: Path
) -> None:
    add_member(engine, "GONE", email="gone@example.com")
    erased = run(workdir, "members", "erase", "GONE", DATABASE_URL=database_url)
    assert erased.returncode == 0, erased.stderr
    assert "erased GONE" in erased.stdout
    assert member(engine, "GONE") is None
    again = run(workdir, "members", "erase", "GONE", DATABASE_URL=database_url)
    assert again.returncode == 1 and "no member" in again.stderr


def test_a_new_member_never_gets_the_id_of_an_erased_one(api: httpx.Client, engine: Engine) -> None:
    api.put("/api/v1/members/FIRST", json={})
    api.put("/api/v1/members/LAST", json={})
    last = member(engine, "LAST")
    assert last is not None
    api.delete("/api/v1/members/LAST")
    api.put("/api/v1/members/NEXT", json={})
    following = member(engine, "NEXT")
    assert following is not None and last.id is not None and following.id is not None
    assert following.id > last.id  # an old unsubscribe link of LAST names nobody


def test_a_reimport_of_a_suppressed_address_after_erasure_stays_suppressed(
    api: httpx.Client, engine: Engine, tmp_path: Path
) -> None:
    api.put("/api/v1/members/GONE", json={"email": "left@example.com"})
    api.patch("/api/v1/members/GONE/consent", json={"channel": "email", "opt_in": False})
    assert api.delete("/api/v1/members/GONE").status_code == 200
    api.put("/api/v1/members/BACK", json={"email": "left@example.com", "tags": ["newsletter"]})
    campaign = write_campaign(tmp_path / "c", tags=["newsletter"])
    expansion = expand(engine, load_campaign(campaign), keys=AddressKeys(b"test-suppression-key"))
    assert expansion.eligible["email"] == 0
    assert expansion.excluded_by["email"]["suppressed"] == 1


# ------------------------------------------------------------- hostile input, ids


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_cursors_limits_and_deep_json_that_are_not_plain_are_refused_not_a_500(
    api: httpx.Client,
) -> None:
    api.put("/api/v1/members/C1", json={"email": "c1@example.com"})
    api.patch("/api/v1/members/C1/consent", json={"channel": "sms", "opt_in": False})
    feed = "/api/v1/consent-changes"
    first = api.get(feed)
    assert first.status_code == 200 and len(first.json()["changes"]) == 1
    last = first.json()["cursor"]
    assert api.get(feed, params={"after": last}).json() == {"changes": [], "cursor": last}

    for text in (
        "c1:²",  # a digit to str.isdigit(), not to int()
        "c1:٣",
        "c1:" + "9" * 30,
        "c1:" + "9" * 5000,
        "c1:2147483648",  # over PostgreSQL's INTEGER
        "c1:100000000",  # beyond the last change: a shop resuming there would skip
        "c1:2",
        "c1:-1",
        "c1:",
    ):
        answer = api.get(feed, params={"after": _cursor_of(text)})
        assert answer.status_code == 400, (text[:20], answer.status_code)
        assert "cursor" in answer.json()["error"] or "beyond" in answer.json()["error"]
    for limit in ("²", "٣", "9" * 5000, "1001", "-1"):
        assert api.get(feed, params={"limit": limit}).status_code == 422, limit

    deep = {"json": "[" * 5000 + "]" * 5000, "objects": '{"a":' * 5000 + "1" + "}" * 5000}
    for body in deep.values():
        for method, path in (
            ("PUT", "/api/v1/members/C1"),
            ("POST", "/api/v1/members/batch"),
            ("PATCH", "/api/v1/members/C1/consent"),
        ):
            answer = api.request(method, path, content=body)
            assert answer.status_code == 400, (method, answer.status_code)
            assert answer.json() == {"error": "the body is JSON nested too deep"}


def test_every_lookup_by_id_normalises_it_as_the_put_stored_it(
    api: httpx.Client, engine: Engine, database_url: str, workdir: Path
) -> None:
    assert api.put("/api/v1/members/M۲۰۱۰", json={"email": "m@example.com"}).status_code == 201
    assert member(engine, "M2010") is not None

    answer = api.get("/api/v1/members/M۲۰۱۰")
    assert answer.status_code == 200 and answer.json()["external_id"] == "M2010"
    printed = run(workdir, "members", "export", "M۲۰۱۰", DATABASE_URL=database_url)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["external_id"] == "M2010"

    assert api.delete("/api/v1/members/M٢٠١٠").status_code == 200  # Arabic-Indic digits
    assert member(engine, "M2010") is None
    api.put("/api/v1/members/M2011", json={})
    erased = run(workdir, "members", "erase", "\u200fM۲۰۱۱ ", DATABASE_URL=database_url)
    assert erased.returncode == 0, erased.stderr
    assert member(engine, "M2011") is None


def test_an_id_with_a_slash_is_refused_by_the_batch_the_api_could_not_reach_it(
    api: httpx.Client, engine: Engine
) -> None:
    answer = api.post(
        "/api/v1/members/batch", json={"members": [{"external_id": "A/1"}, {"external_id": "B"}]}
    )
    assert answer.json()["applied"] == 1
    [error] = answer.json()["errors"]
    assert (error["index"], error["external_id"], error["field"]) == (0, "A/1", "external_id")
    assert "'/'" in error["reason"]
    assert member(engine, "A/1") is None and member(engine, "B") is not None
