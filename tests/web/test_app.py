"""The unsubscribe endpoint, driven over HTTP: Starlette's TestClient for most tests, a
real uvicorn process on a free port for the rest. Real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.testclient import TestClient  # on httpx2 (the dev extra)
from typer.testing import CliRunner

from dispatcher.audience.tokens import TokenSigner
from dispatcher.cli import app as cli_app
from dispatcher.runtime import set_runtime
from dispatcher.settings import Settings, get_settings
from dispatcher.store.db import make_engine
from dispatcher.store.models import Channel, ConsentEvent, DeliveryStatus, Member
from dispatcher.web import MAX_BODY, create_app
from tests.eventually import eventually
from tests.factories import add_member, harness, write_campaign, write_lock_held

ROOT = Path(__file__).resolve().parents[2]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
SHOP = "فروشگاه نمونه"
SERVER_SECRET = "server-secret-0123456789abcdef"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # No cookies are ever set, and redirects are not followed: a 3xx would show.
    with TestClient(
        create_app(settings), follow_redirects=False, raise_server_exceptions=False
    ) as c:
        yield c


@pytest.fixture
def signer(settings: Settings) -> TokenSigner:
    return TokenSigner(settings.unsubscribe_keys())


@pytest.fixture
def member(engine: Engine) -> Member:
    return add_member(engine, "C1", email="ali.rezaei@gmail.com", mobile="+989121234567")


def url(token: str) -> str:
    return f"/u/{token}"


def reload(engine: Engine, member_id: int | None) -> Member:
    with Session(engine) as session:
        found = session.get(Member, member_id)
        assert found is not None
        return found


def events(engine: Engine) -> list[ConsentEvent]:
    with Session(engine) as session:
        return list(session.exec(select(ConsentEvent).order_by(col(ConsentEvent.id))).all())


def form_action(page: str) -> str:
    [action] = re.findall(r'<form method="post" action="([^"]*)">', page)
    return action


# ------------------------------------------------------------------------ the page


def test_the_page_is_persian_rtl_names_the_shop_and_masks_the_address(
    client: TestClient, signer: TokenSigner, member: Member
) -> None:
    assert member.id is not None
    response = client.get(url(signer.sign(member.id, Channel.EMAIL)))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert '<html lang="fa" dir="rtl">' in page
    assert SHOP in page and "لغو عضویت" in page
    assert "a***@gmail.com" in page
    assert "ali.rezaei" not in page and "rezaei" not in page


def test_the_sms_page_masks_the_mobile(
    client: TestClient, signer: TokenSigner, member: Member
) -> None:
    assert member.id is not None
    page = client.get(url(signer.sign(member.id, Channel.SMS))).text
    assert "+98912***4567" in page and "9121234567" not in page
    assert "پیامک" in page


def test_the_page_has_a_real_button_that_posts_and_no_script(
    client: TestClient, signer: TokenSigner, member: Member
) -> None:
    assert member.id is not None
    page = client.get(url(signer.sign(member.id, Channel.EMAIL))).text
    assert re.search(r'<form method="post" action="[^"]+">\s*<button type="submit">', page)
    assert "<script" not in page.lower() and "javascript:" not in page.lower()
    assert "onload" not in page.lower() and "http-equiv" not in page.lower()  # no auto-submit


def test_a_get_never_changes_anything(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    before = reload(engine, member.id)
    for channel in Channel:
        token = signer.sign(member.id, channel)
        for _ in range(3):  # a scanner, a previewer, the person
            assert client.get(url(token)).status_code == 200
            assert client.head(url(token)).status_code == 200
            assert client.get(url(token) + "?List-Unsubscribe=One-Click").status_code == 200
    after = reload(engine, member.id)
    assert after.email_opt_in and after.sms_opt_in
    assert after.updated_at == before.updated_at
    assert events(engine) == []


# ---------------------------------------------------------------------- unsubscribe


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_one_click_post_unsubscribes_at_once(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine, encoding: str
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    started = datetime.now(UTC)
    if encoding == "urlencoded":
        response = client.post(url(token), data=ONE_CLICK)
        assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    else:
        response = client.post(url(token), files={"List-Unsubscribe": (None, "One-Click")})
        assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200
    assert "location" not in response.headers and "set-cookie" not in response.headers
    assert "عضویت شما لغو شد" in response.text and "a***@gmail.com" in response.text

    after = reload(engine, member.id)
    assert not after.email_opt_in and after.email_optout_source == "one-click"
    assert after.sms_opt_in  # only the token's channel
    [event] = events(engine)
    assert (event.member_id, event.channel, event.opted_in, event.source) == (
        member.id,
        "email",
        False,
        "one-click",
    )
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    assert started - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(seconds=1)


def test_an_sms_token_unsubscribes_from_sms_only(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    assert client.post(url(signer.sign(member.id, Channel.SMS)), data=ONE_CLICK).status_code == 200
    after = reload(engine, member.id)
    assert not after.sms_opt_in and after.sms_optout_source == "one-click"
    assert after.email_opt_in


def test_the_page_button_unsubscribes_with_source_link(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    page_url = "http://testserver" + url(signer.sign(member.id, Channel.EMAIL))
    action = urljoin(page_url, form_action(client.get(page_url).text))
    assert action == page_url
    # What a browser sends for a form without named fields.
    response = client.post(
        action, content=b"", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200
    assert reload(engine, member.id).email_optout_source == "link"
    assert [e.source for e in events(engine)] == ["link"]


def sixteen_plus_multipart() -> bytes:
    parts = [
        b'--xyz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i for i in range(20)
    ]
    return b"".join(parts) + b"--xyz--\r\n"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", b"List-Unsubscribe=One-Click", id="no boundary"),
        pytest.param("multipart/form-data; boundary=xyz", b"\x00garbage\xff", id="garbage"),
        pytest.param("multipart/form-data; boundary=xyz", sixteen_plus_multipart(), id="17+ parts"),
        pytest.param(
            "application/x-www-form-urlencoded", b"&".join([b"a=1"] * 17), id="17+ fields"
        ),
    ],
)
def test_a_valid_token_with_an_unreadable_body_opts_out_with_source_link(
    client: TestClient,
    signer: TokenSigner,
    member: Member,
    engine: Engine,
    content_type: str,
    body: bytes,
) -> None:
    assert member.id is not None
    response = client.post(
        url(signer.sign(member.id, Channel.EMAIL)),
        content=body,
        headers={"content-type": content_type},
    )
    assert response.status_code == 200 and "عضویت شما لغو شد" in response.text
    after = reload(engine, member.id)
    assert not after.email_opt_in and after.email_optout_source == "link"
    assert [e.source for e in events(engine)] == ["link"]


def test_a_second_post_is_a_200_and_changes_nothing_more(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    assert client.post(url(token), data=ONE_CLICK).status_code == 200
    first = reload(engine, member.id)
    for _ in range(3):
        again = client.post(url(token), data=ONE_CLICK)
        assert again.status_code == 200 and "پیش‌تر لغو شده" in again.text
    client.post(url(token))  # the page's button, later: still the first source
    after = reload(engine, member.id)
    assert after.updated_at == first.updated_at and after.email_optout_source == "one-click"
    assert len(events(engine)) == 1


def test_the_page_of_a_member_already_out_offers_the_undo_and_changes_nothing(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    client.post(url(token), data=ONE_CLICK)
    page = client.get(url(token)).text
    assert "پیش‌تر لغو شده" in page and form_action(page) == f"{token}/resubscribe"
    assert len(events(engine)) == 1


def test_an_import_opt_out_becomes_sticky_when_the_member_unsubscribes(
    client: TestClient, signer: TokenSigner, engine: Engine
) -> None:
    imported_out = add_member(engine, "C2", email="z@example.com", email_opt_in=False)
    assert imported_out.id is not None
    assert client.post(url(signer.sign(imported_out.id, Channel.EMAIL))).status_code == 200
    assert reload(engine, imported_out.id).email_optout_source == "link"
    assert events(engine) == []  # consent did not change: no event


# ----------------------------------------------------------------------------- undo


def test_the_undo_button_resubscribes_and_records_it(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    page_url = "http://testserver" + url(signer.sign(member.id, Channel.EMAIL))
    done = client.post(page_url, data=ONE_CLICK)
    undo_url = urljoin(page_url, form_action(done.text))
    assert undo_url == page_url + "/resubscribe"

    undone = client.post(undo_url)
    assert undone.status_code == 200 and "location" not in undone.headers
    assert "دوباره فعال شد" in undone.text
    after = reload(engine, member.id)
    assert after.email_opt_in and after.email_optout_source is None
    assert [(e.opted_in, e.source) for e in events(engine)] == [
        (False, "one-click"),
        (True, "link"),
    ]
    assert client.post(undo_url).status_code == 200  # idempotent too
    assert len(events(engine)) == 2

    # ... and the page it shows can unsubscribe again.
    again = urljoin(undo_url, form_action(undone.text))
    assert again == page_url
    assert client.post(again).status_code == 200
    assert not reload(engine, member.id).email_opt_in


def test_the_undo_cannot_be_triggered_by_a_get(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    client.post(url(token), data=ONE_CLICK)
    assert client.get(url(token) + "/resubscribe").status_code == 405
    assert client.head(url(token) + "/resubscribe").status_code == 405
    assert not reload(engine, member.id).email_opt_in
    assert len(events(engine)) == 1


def test_a_405_names_every_method_the_path_takes(
    client: TestClient, signer: TokenSigner, member: Member
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    for method in ("PUT", "DELETE", "PATCH"):
        refused = client.request(method, url(token))
        assert refused.status_code == 405
        assert {m.strip() for m in refused.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}
    undo = client.get(url(token) + "/resubscribe")
    assert undo.status_code == 405 and undo.headers["allow"] == "POST"


# ------------------------------------------------------------------------ bad tokens


def bad_tokens(signer: TokenSigner, member_id: int) -> dict[str, str]:
    good = signer.sign(member_id, Channel.EMAIL)
    swap = {c: "B" if c == "A" else "A" for c in good}
    other_key = TokenSigner([b"some-other-key-0123456789"])
    return {
        "first char changed": swap[good[0]] + good[1:],
        "middle char changed": good[:17] + swap[good[17]] + good[18:],
        "last char changed": good[:-1] + swap[good[-1]],
        "truncated": good[:-1],
        "half": good[: len(good) // 2],
        "extended": good + "A",
        "another key": other_key.sign(member_id, Channel.EMAIL),
        "unknown member": signer.sign(member_id + 1000, Channel.EMAIL),
        "garbage": "not-a-token",
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_token_gets_the_same_400_page_and_changes_nothing(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine, method: str
) -> None:
    assert member.id is not None
    pages = set()
    for kind, token in bad_tokens(signer, member.id).items():
        for path in (url(token), url(token) + "/resubscribe"):
            if method == "GET" and path.endswith("/resubscribe"):
                continue
            response = client.request(method, path, data=ONE_CLICK if method == "POST" else None)
            assert response.status_code == 400, (kind, path)
            assert '<html lang="fa" dir="rtl">' in response.text
            pages.add(response.text)
    assert len(pages) == 1  # a forged token and an unknown member look the same
    assert reload(engine, member.id).email_opt_in
    assert events(engine) == []


def test_every_single_character_change_is_refused_over_http(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    for i, c in enumerate(token):
        tampered = token[:i] + ("x" if c != "x" else "y") + token[i + 1 :]
        assert client.post(url(tampered), data=ONE_CLICK).status_code == 400
    assert reload(engine, member.id).email_opt_in


def test_links_signed_with_an_older_key_keep_working_after_a_rotation(
    make_settings: Callable[..., Settings], database_url: str, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    old, new = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
    months_ago = TokenSigner([old.encode()]).sign(member.id, Channel.EMAIL)
    rotated = make_settings(database_url=database_url, unsubscribe_secret=f"{new},{old}")
    with TestClient(create_app(rotated)) as c:
        assert c.get(url(months_ago)).status_code == 200
        assert c.post(url(months_ago), data=ONE_CLICK).status_code == 200
    assert not reload(engine, member.id).email_opt_in
    retired = make_settings(database_url=database_url, unsubscribe_secret=new)
    with TestClient(create_app(retired)) as c:
        assert c.get(url(months_ago)).status_code == 400


# ------------------------------------------------------------- headers and limits


def test_every_answer_carries_the_security_headers(
    client: TestClient, signer: TokenSigner, member: Member
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    answers = [
        client.get(url(token)),
        client.post(url(token), data=ONE_CLICK),
        client.post(url(token) + "/resubscribe"),
        client.get(url("nope")),
        client.get("/nowhere"),
        client.put(url(token)),
        client.get("/u/" + "A" * 300),
        client.post(url(token), content=b"x" * (MAX_BODY + 1)),
        client.get("/healthz"),
    ]
    assert sorted({a.status_code for a in answers}) == [200, 400, 404, 405, 413, 414]
    for answer in answers:
        h = answer.headers
        csp = h["content-security-policy"]
        assert "script-src 'none'" in csp and "default-src 'none'" in csp, answer
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in csp
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"
        assert "set-cookie" not in h and "location" not in h
        assert answer.status_code < 300 or answer.status_code >= 400


def test_an_oversized_path_is_refused(client: TestClient) -> None:
    assert client.get("/u/" + "A" * 250).status_code == 414
    assert client.post("/u/" + "A" * 250, data=ONE_CLICK).status_code == 414
    assert client.get("/u/x?" + "a=1&" * 500).status_code == 414


def test_an_oversized_body_is_refused_and_changes_nothing(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    token = signer.sign(member.id, Channel.EMAIL)
    big = b"List-Unsubscribe=One-Click&" + b"x" * MAX_BODY
    declared = client.post(
        url(token), content=big, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b"List-Unsubscribe=One-Click&"
        for _ in range(10):
            yield b"x" * 1024

    streamed = client.post(
        url(token), content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    assert reload(engine, member.id).email_opt_in
    # A body just under the limit is fine.
    fits = b"List-Unsubscribe=One-Click&pad=" + b"x" * (MAX_BODY - 40)
    ok = client.post(
        url(token), content=fits, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert ok.status_code == 200 and not reload(engine, member.id).email_opt_in


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database is not the point
def test_junk_paths_and_bodies_never_cause_a_server_error(
    client: TestClient, signer: TokenSigner, member: Member, engine: Engine
) -> None:
    assert member.id is not None
    rng = random.Random(8058)
    token = signer.sign(member.id, Channel.EMAIL)
    alphabet = "AZaz09-_+/=%.~!$&'()*,;:@ ?#\\\"<>{}|^`\x7fé٠ـ\u200c"
    paths = ["/", "//", "/u", "/u/", "/u//", "/u/%00", "/u/%ff%fe", "/u/..%2f..%2fetc",
             "/u/%2e%2e/healthz", f"/u/{token}/", f"/u/{token}/x", f"/u/{token}%00",
             f"/u/{token}/resubscribe/x", "/healthz/x"]  # fmt: skip
    for _ in range(80):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        paths.append("/u/" + quote(junk, safe=""))
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        paths.append("/u/" + quote(raw, safe=""))
    for path in paths:
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            response = client.request(method, path)
            assert response.status_code < 500, (method, path, response.status_code)
    assert reload(engine, member.id).email_opt_in and events(engine) == []

    content_types = [
        None,
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/json",
        "\x00garbage/;;;=",
    ]
    bodies = [b"", b"List-Unsubscribe=One-Click", b"%%%&&&===", b"a=" + b"%ff" * 100,
              b"&" * 2000, b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--",
              b"--xyz\r\n\r\n", b"\x00\xff" * 300]  # fmt: skip
    bodies += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000))) for _ in range(24)]
    bad = url(token[:-2] + "xx")
    for body in bodies:
        for content_type in content_types:
            headers = {"content-type": content_type} if content_type else {}
            for path in (bad, url(token)):
                response = client.post(path, content=body, headers=headers)
                assert response.status_code in (200, 400), (body[:40], content_type, path)
                if path == bad:
                    assert response.status_code == 400
    assert len(events(engine)) <= 1  # only ever the one genuine token's opt-out


# ---------------------------------------------------------------------------- health


def test_healthz_answers_when_the_database_does(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.text == "ok"


def test_healthz_fails_when_the_database_does_not_answer(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    gone = make_settings(database_url=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    with TestClient(create_app(gone), raise_server_exceptions=False) as c:
        assert c.get("/healthz").status_code == 503
        # The pages say so too, rather than failing with a 500.
        token = TokenSigner(gone.unsubscribe_keys()).sign(1, Channel.EMAIL)
        assert c.post(url(token), data=ONE_CLICK).status_code == 503


# --------------------------------------------------------------- mid-campaign opt-out


def test_an_opt_out_mid_campaign_stops_the_queued_email(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url=database_url)  # outbox mode: no SMTP host
    with harness(settings) as h:
        stays = add_member(h.engine, "C1", email="maryam@example.com")
        leaves = add_member(h.engine, "C2", email="ali@example.com")
        assert leaves.id is not None
        result = h.send(write_campaign(tmp_path / "campaign"))  # expanded and enqueued
        assert result.eligible == {"email": 2}
        assert {d.status for d in h.deliveries()} == {DeliveryStatus.PENDING}

        # The member unsubscribes from a mail client while the emails are queued.
        token = TokenSigner(settings.unsubscribe_keys()).sign(leaves.id, Channel.EMAIL)
        with TestClient(create_app(settings)) as c:
            assert c.post(url(token), data=ONE_CLICK).status_code == 200

        h.run_workers()
        by_member = {d.member_id: d for d in h.deliveries()}
        assert by_member[leaves.id].status == DeliveryStatus.SKIPPED
        assert by_member[stays.id].status == DeliveryStatus.SENT
        written = list((settings.outbox_dir / "email").glob("*.eml"))
        assert [p.name for p in written] == [f"yalda-test-{by_member[stays.id].id}.eml"]
        assert b"ali@example.com" not in written[0].read_bytes()


# ------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def procfile_web(port: int) -> list[str]:
    """The Procfile's `web` command, as a shell would run it with PORT set."""
    [line] = [x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:")]
    command = line.removeprefix("web:").replace("${PORT:-8000}", str(port))
    return [sys.executable, "-m", *shlex.split(command)]


@pytest.fixture
def start_uvicorn(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """`start_uvicorn(command, **env)` runs `python -m uvicorn ...` on `sqlite_url` with
    the secret `SERVER_SECRET`, and returns its base URL once /healthz answers; stopped
    at the end of the test (its output in tmp_path/uvicorn.log, checked: no traceback)."""
    procs: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "uvicorn.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMTP_", "REDIS_", "DATABASE_", "UNSUBSCRIBE_", "MAIL_"))
    }
    env.update(
        DATABASE_URL=sqlite_url,
        UNSUBSCRIBE_SECRET=SERVER_SECRET,
        MAIL_FROM=f"{SHOP} <news@shop.example>",
        PYTHONPATH=str(ROOT),
    )
    log = log_path.open("wb")

    def start(command: list[str], **extra: str) -> str:
        port = int(command[command.index("--port") + 1])
        proc = subprocess.Popen(
            command, cwd=tmp_path, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        eventually(healthy, timeout=30, interval=0.1, what="uvicorn answering /healthz")
        return base

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert b"Traceback" not in log_path.read_bytes()


@pytest.fixture
def uvicorn_server(start_uvicorn: Callable[..., str]) -> tuple[str, str]:
    """`uvicorn unsubscribe_server:app` on a free port: (base URL, secret)."""
    address = ["--host", "127.0.0.1", "--port", str(free_port())]
    command = [sys.executable, "-m", "uvicorn", "unsubscribe_server:app", *address]
    return start_uvicorn([*command, "--log-level", "warning"]), SERVER_SECRET


def test_the_procfile_web_command_keeps_tokens_out_of_its_access_log(
    start_uvicorn: Callable[..., str], sqlite_url: str, tmp_path: Path
) -> None:
    command = procfile_web(free_port())
    for option in ("--timeout-keep-alive", "--limit-concurrency", "--proxy-headers"):
        assert option in command  # slow or many clients cannot hold the server forever
    base = start_uvicorn(command)
    engine = make_engine(sqlite_url)
    try:
        member = add_member(engine, "C1", email="ali@example.com")
        assert member.id is not None
        token = TokenSigner([SERVER_SECRET.encode()]).sign(member.id, Channel.EMAIL)
        with httpx.Client(base_url=base) as http:
            assert http.get(url(token)).status_code == 200
            assert http.post(url(token), data=ONE_CLICK).status_code == 200
            assert http.post(url(token) + "/resubscribe").status_code == 200
            assert http.put(url(token)).status_code == 405
    finally:
        engine.dispose()
    logged = (tmp_path / "uvicorn.log").read_text()
    assert logged.count('"GET /u/*** HTTP/1.1" 200') == 1, logged
    assert '"POST /u/*** HTTP/1.1" 200' in logged and '"POST /u/***/resubscribe' in logged
    assert token not in logged and token[:12] not in logged


def test_a_real_server_honours_one_click_as_gmail_and_yahoo_send_it(
    uvicorn_server: tuple[str, str], sqlite_url: str
) -> None:
    base, secret = uvicorn_server
    engine = make_engine(sqlite_url)
    try:
        gmail = add_member(engine, "G1", email="g@gmail.com")
        yahoo = add_member(engine, "Y1", email="y@yahoo.com")
        assert gmail.id is not None and yahoo.id is not None
        signer = TokenSigner([secret.encode()])
        with httpx.Client(base_url=base, follow_redirects=False) as http:
            page = http.get(url(signer.sign(gmail.id, Channel.EMAIL)))
            assert page.status_code == 200 and "g***@gmail.com" in page.text
            assert page.headers["referrer-policy"] == "no-referrer"

            one = http.post(url(signer.sign(gmail.id, Channel.EMAIL)), data=ONE_CLICK)
            two = http.post(
                url(signer.sign(yahoo.id, Channel.EMAIL)),
                files={"List-Unsubscribe": (None, "One-Click")},
            )
            for response in (one, two):
                assert response.status_code == 200 and "location" not in response.headers
            assert http.cookies == {}
            assert http.post(url("forged"), data=ONE_CLICK).status_code == 400
            assert http.get("/healthz").text == "ok"
        for m in (gmail, yahoo):
            found = reload(engine, m.id)
            assert not found.email_opt_in and found.email_optout_source == "one-click"
    finally:
        engine.dispose()


def test_the_procfile_web_command_keeps_an_opt_out_asked_while_an_import_holds_the_lock(
    start_uvicorn: Callable[..., str], sqlite_url: str, tmp_path: Path
) -> None:
    base = start_uvicorn(
        procfile_web(free_port()),
        UNSUBSCRIBE_BUSY_TIMEOUT="0.3",
        UNSUBSCRIBE_RETRY_INTERVAL="0.1",
    )
    engine = make_engine(sqlite_url)
    try:
        member = add_member(engine, "C1", email="ali@example.com")
        assert member.id is not None
        token = TokenSigner([SERVER_SECRET.encode()]).sign(member.id, Channel.EMAIL)
        with write_lock_held(tmp_path / "test.db") as release, httpx.Client(base_url=base) as http:
            start = time.monotonic()
            assert http.post(url(token), data=ONE_CLICK).status_code == 200
            assert http.get("/healthz").text == "ok"
            assert http.get(url(token)).status_code == 200
            assert time.monotonic() - start < 3
            assert reload(engine, member.id).email_opt_in  # kept: the import has the lock
            release()
            eventually(
                lambda: not reload(engine, member.id).email_opt_in,
                what="the kept opt-out recorded",
            )
        assert reload(engine, member.id).email_optout_source == "one-click"
    finally:
        engine.dispose()


def raw_exchange(base: str, request: bytes, timeout: float = 5) -> bytes:
    """Send bytes as they are; everything the server answers until it closes."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_real_server_refuses_a_huge_body_without_waiting_for_it(
    uvicorn_server: tuple[str, str],
) -> None:
    base, _ = uvicorn_server
    start = time.monotonic()
    # Headers only: a server that read the body first would wait for 100 MB that never come.
    answer = raw_exchange(
        base,
        b"POST /u/AQEAAAAAAAAAAVucFvWR2KrQWhYGwzdCVPo HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert time.monotonic() - start < 4
    long_path = raw_exchange(base, b"GET /u/" + b"A" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert long_path.startswith(b"HTTP/1.1 414 "), long_path[:200]
    for junk in (b"GET /u/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01junk\r\n\r\n"):
        answer = raw_exchange(base, junk)
        assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]


# ------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("REDIS_URL", "SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("UNSUBSCRIBE_SECRET", "test-secret-key-0123456789")
    get_settings.cache_clear()
    previous = set_runtime(None)
    yield
    installed = set_runtime(previous)  # the one the command built
    if installed is not None:
        installed.close()
    get_settings.cache_clear()


def test_members_optouts_lists_opt_outs_as_csv_and_json(
    cli_env: None, client: TestClient, signer: TokenSigner, engine: Engine
) -> None:
    one = add_member(engine, "C1", email="a@example.com")
    two = add_member(engine, "C2", email="b@example.com", mobile="+989121234567")
    assert one.id is not None and two.id is not None
    client.post(url(signer.sign(one.id, Channel.EMAIL)), data=ONE_CLICK)
    client.post(url(signer.sign(two.id, Channel.SMS)))
    client.post(url(signer.sign(two.id, Channel.SMS)) + "/resubscribe")  # opt-ins are not listed

    runner = CliRunner()
    as_csv = runner.invoke(cli_app, ["members", "optouts"])
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["external_id"], r["channel"], r["source"]) for r in rows] == [
        ("C1", "email", "one-click"),
        ("C2", "sms", "link"),
    ]
    assert all(datetime.fromisoformat(r["at"]).tzinfo is not None for r in rows)

    as_json = runner.invoke(cli_app, ["members", "optouts", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == rows

    last = rows[-1]["at"]
    since = runner.invoke(cli_app, ["members", "optouts", "--since", last, "--format", "json"])
    assert since.exit_code == 0, (since.output, since.exception)
    assert [r["external_id"] for r in json.loads(since.stdout)] == ["C2"]
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()  # any zone's
    later = runner.invoke(cli_app, ["members", "optouts", "--since", tomorrow])
    assert later.exit_code == 0 and later.stdout.strip() == "external_id,channel,at,source"


def test_members_optouts_refuses_a_bad_date(cli_env: None) -> None:
    result = CliRunner().invoke(cli_app, ["members", "optouts", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_members_consent_changes_lists_opt_outs_and_resubscribes(
    cli_env: None, client: TestClient, signer: TokenSigner, engine: Engine
) -> None:
    one = add_member(engine, "=HYPERLINK(1)", email="a@example.com")  # a formula, as CSV
    assert one.id is not None
    page = url(signer.sign(one.id, Channel.EMAIL))
    client.post(page, data=ONE_CLICK)
    client.post(page + "/resubscribe")

    runner = CliRunner()
    as_json = runner.invoke(cli_app, ["members", "consent-changes", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert [(r["external_id"], r["channel"], r["opt_in"], r["source"]) for r in rows] == [
        ("=HYPERLINK(1)", "email", False, "one-click"),
        ("=HYPERLINK(1)", "email", True, "link"),
    ]
    as_csv = runner.invoke(cli_app, ["members", "consent-changes"])
    assert as_csv.exit_code == 0, as_csv.output
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["external_id"], r["opt_in"]) for r in table] == [
        ("'=HYPERLINK(1)", "0"),
        ("'=HYPERLINK(1)", "1"),
    ]
    optouts = runner.invoke(cli_app, ["members", "optouts"])
    assert "'=HYPERLINK(1)" in optouts.stdout

    # Jalali dates, as `--at` takes them: 1405-09-10 is 2026-12-01.
    jalali_past = runner.invoke(cli_app, ["members", "consent-changes", "--since", "1404-01-01"])
    assert len(list(csv.DictReader(io.StringIO(jalali_past.stdout)))) == 2
    future = runner.invoke(cli_app, ["members", "optouts", "--since", "1499-01-01"])
    assert future.exit_code == 0, future.output
    assert future.stdout.strip() == "external_id,channel,at,source"
