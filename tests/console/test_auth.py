"""Signing in and out, the lockout, sessions, CSRF and the headers of every page."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dispatcher.store import audit
from tests.console.conftest import PASSWORD, sign_in, token

WRONG = "not the password at all"


def test_the_right_password_opens_the_console(client: TestClient, staff: dict[str, str]) -> None:
    answer = sign_in(client, "marketer")
    assert answer.status_code == 303 and answer.headers["location"] == "/campaigns"
    page = client.get("/campaigns")
    assert page.status_code == 200
    assert 'dir="rtl"' in page.text and "marketer" in page.text


def test_a_page_without_a_session_sends_to_the_login(client: TestClient) -> None:
    answer = client.get("/campaigns", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    client: TestClient, staff: dict[str, str]
) -> None:
    wrong = sign_in(client, "marketer", WRONG)
    unknown = sign_in(client, "nobody-here", WRONG)
    assert wrong.status_code == unknown.status_code == 401
    assert "نام کاربری یا گذرواژه نادرست است" in wrong.text
    assert "نام کاربری یا گذرواژه نادرست است" in unknown.text


def test_five_wrong_passwords_lock_the_account_even_to_the_right_one(
    client: TestClient, staff: dict[str, str], engine: Engine
) -> None:
    for _ in range(4):
        assert sign_in(client, "viewer", WRONG).status_code == 401
    fifth = sign_in(client, "viewer", WRONG)
    assert fifth.status_code == 429 and "۱۵ دقیقه قفل" in fifth.text
    right = sign_in(client, "viewer", PASSWORD)
    assert right.status_code == 429 and "۱۵ دقیقه قفل" in right.text
    assert sign_in(client, "marketer").status_code == 303  # other accounts are not
    actions = [row["action"] for row in audit.events(engine)]
    assert actions.count("login-failed") == 4 and actions.count("login-locked") == 2


def test_an_unknown_name_is_locked_after_five_tries_too(
    client: TestClient, staff: dict[str, str]
) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    for _ in range(4):
        assert sign_in(client, ghost, WRONG).status_code == 401
    assert sign_in(client, ghost, WRONG).status_code == 429


def test_the_session_cookie_is_httponly_strict_and_secure(
    client: TestClient, staff: dict[str, str]
) -> None:
    cookie = sign_in(client, "viewer").headers["set-cookie"]
    assert "console_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie


def test_insecure_cookies_only_when_asked(
    client_for: Callable[..., TestClient], staff: dict[str, str]
) -> None:
    client = client_for(console_insecure_cookies=True)
    cookie = sign_in(client, "viewer").headers["set-cookie"]
    assert "Secure" not in cookie and "HttpOnly" in cookie


def test_logout_ends_the_session_on_the_server(
    signed_in: Callable[[str], TestClient],
) -> None:
    client = signed_in("viewer")
    cookie = client.cookies.get("console_session")
    assert cookie
    answer = client.post("/logout", data={"csrf_token": token(client)}, follow_redirects=False)
    assert answer.status_code == 303
    client.cookies.set("console_session", cookie)  # the old cookie, kept by a thief
    assert client.get("/campaigns", follow_redirects=False).status_code == 303


def test_a_login_without_its_csrf_token_is_refused(
    client: TestClient, staff: dict[str, str]
) -> None:
    client.get("/login")
    answer = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert answer.status_code == 403
    assert client.cookies.get("console_session") is None


def test_every_page_has_the_security_headers(signed_in: Callable[[str], TestClient]) -> None:
    client = signed_in("admin")
    for path in ("/campaigns", "/members?q=x", "/audit", "/suppressions", "/campaigns/new"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        script = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
        assert script.strip() == "script-src 'self'", path
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"


def test_no_page_has_an_inline_script(signed_in: Callable[[str], TestClient]) -> None:
    client = signed_in("admin")
    for path in ("/campaigns", "/members", "/audit", "/suppressions", "/campaigns/new"):
        html = client.get(path).text
        assert html.startswith("<!doctype html>")
        for tag in html.split("<script")[1:]:
            head = tag.split(">", 1)[0]
            assert "src=" in head or 'type="application/json"' in head, path


def test_healthz_answers_without_a_session(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"
