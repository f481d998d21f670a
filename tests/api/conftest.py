"""The shop's API in-process through Starlette's TestClient (HTTP on httpx's transport,
the app's lifespan run as uvicorn runs it), on the test's database (SQLite and
PostgreSQL). One test runs it under uvicorn, as the Procfile does."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dispatcher.api import create_app as create_api
from dispatcher.settings import load_settings
from dispatcher.store.apikeys import create_key
from dispatcher.web import create_app as create_unsubscribe_server
from tests.servers.app_server import AppServer

SECRET = "test-secret-key-0123456789"
ENV = {
    "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
    "UNSUBSCRIBE_SECRET": SECRET,
    "SUPPRESSION_KEY": "test-suppression-key",  # = the test settings' (tests/conftest.py)
    "UNSUBSCRIBE_BASE_URL": "https://shop.example",
}
APPS: dict[str, Callable[..., Starlette]] = {
    "dispatcher.api:app": create_api,
    "unsubscribe_server:app": create_unsubscribe_server,
}
# Settings a developer's shell may carry: the app starts from what the test gives.
CLEARED = ("SMTP_", "REDIS_", "DATABASE_", "KAVENEGAR_", "UNSUBSCRIBE_", "SMS_", "API_")


@pytest.fixture
def start_server(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TestClient]]:
    """`start_server(target="dispatcher.api:app", **env)`: the app with settings read
    from that environment, as at uvicorn's start; stopped after the test."""
    with ExitStack() as stack:

        def start(target: str = "dispatcher.api:app", **env: str) -> TestClient:
            with monkeypatch.context() as patch:
                for name in list(os.environ):
                    if name.startswith(CLEARED):
                        patch.delenv(name)
                environ = {**ENV, "DATABASE_URL": database_url, "API_RATE_LIMIT": "1000", **env}
                for name, value in environ.items():
                    patch.setenv(name, value)
                settings = load_settings(_env_file=None)
            client = TestClient(
                APPS[target](settings), follow_redirects=False, raise_server_exceptions=False
            )
            return stack.enter_context(client)

        yield start


@pytest.fixture
def api_server(start_server: Callable[..., TestClient]) -> TestClient:
    return start_server()


@pytest.fixture
def api_key(engine: Engine) -> str:
    return create_key(engine, "shop-web")


@pytest.fixture
def api(start_server: Callable[..., TestClient], api_key: str) -> TestClient:
    """A client of the API with a valid key."""
    client = start_server()
    client.headers["Authorization"] = f"Bearer {api_key}"
    return client


@pytest.fixture
def uvicorn_api(database_url: str, tmp_path: Path) -> Iterator[AppServer]:
    """`uvicorn dispatcher.api:app` in its own process, as the Procfile runs it."""
    server = AppServer(
        "dispatcher.api:app",
        {**ENV, "DATABASE_URL": database_url, "API_RATE_LIMIT": "1000"},
        tmp_path / "server.log",
    )
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder of its own for `dispatcher` commands (see tests/cli/helpers.py)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder
