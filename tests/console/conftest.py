"""The console in process (Starlette's TestClient) on the test's database, SQLite and
PostgreSQL; staff accounts of each role; signing in as a browser would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dispatcher.console import create_app
from dispatcher.settings import Settings
from dispatcher.store.models import StaffRole
from dispatcher.store.staff import add_staff, use_hasher

PASSWORD = "a long enough password"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no csrf_token input"
    return found[1]


@pytest.fixture(autouse=True)
def cheap_hashes() -> Iterator[None]:
    """Argon2 with small parameters: the same code, a hundredth of the time."""
    previous = use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    use_hasher(previous)


@pytest.fixture
def console_settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url, sms_send_window="00:00-24:00")


@pytest.fixture
def staff(engine: Engine) -> dict[str, str]:
    """One account of each role, named after it."""
    for role in StaffRole:
        add_staff(engine, str(role), role, PASSWORD)
    return {str(role): str(role) for role in StaffRole}


@pytest.fixture
def client_for(console_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """`client_for(**settings)`: a client of a console built on the test's settings."""
    clients: list[TestClient] = []

    def create(**overrides: Any) -> TestClient:
        s = console_settings.model_copy(update=overrides) if overrides else console_settings
        client = TestClient(create_app(s), base_url="https://console.test")
        clients.append(client)
        return client

    yield create
    for client in clients:
        client.close()


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


@pytest.fixture
def signed_in(
    client_for: Callable[..., TestClient], staff: dict[str, str]
) -> Callable[[str], TestClient]:
    """`signed_in(role)`: a client of its own, signed in as that role's account."""

    def create(role: str) -> TestClient:
        client = client_for()
        assert sign_in(client, staff[role]).status_code == 303
        return client

    return create


def token(client: TestClient, path: str = "/campaigns") -> str:
    """The CSRF token of the client's session (from any page's forms)."""
    return csrf_of(client.get(path).text)
