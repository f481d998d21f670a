"""The shop's API over real HTTP: `uvicorn dispatcher.api:app` in its own process, on
the test's database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from dispatcher.store.apikeys import create_key
from tests.servers.app_server import AppServer

SECRET = "test-secret-key-0123456789"
ENV = {
    "MAIL_FROM": "فروشگاه نمونه <news@shop.example>",
    "UNSUBSCRIBE_SECRET": SECRET,
    "SUPPRESSION_KEY": "test-suppression-key",  # = the test settings' (tests/conftest.py)
    "UNSUBSCRIBE_BASE_URL": "https://shop.example",
}


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """`start_server(target="dispatcher.api:app", **env)`: stopped after the test."""
    servers: list[AppServer] = []

    def start(target: str = "dispatcher.api:app", **env: str) -> AppServer:
        environ = {**ENV, "DATABASE_URL": database_url, "API_RATE_LIMIT": "1000", **env}
        log = tmp_path / f"server-{len(servers)}.log"
        server = AppServer(target, environ, log)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def api_server(start_server: Callable[..., AppServer]) -> AppServer:
    return start_server()


@pytest.fixture
def api_key(engine: Engine) -> str:
    return create_key(engine, "shop-web")


@pytest.fixture
def api(api_server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    """A client of the API with a valid key."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder of its own for `dispatcher` commands (see tests/cli/helpers.py)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder
