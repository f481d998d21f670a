"""Pytest fixtures for the test SMTP and Kavenegar servers (each in its own process).

``smtp_server`` and ``kavenegar_server`` hand out one server process per test session, reset
before every test (spool, counters, injections, credit...).  If a test stopped or killed it,
the next test gets a fresh one.  Tests that need their own server (other AUTH, API key,
credit, state file) use ``smtp_server_factory`` / ``kavenegar_server_factory``; those servers
are stopped when the test ends.  Every process is stopped at the latest when the session ends.

Load with ``pytest_plugins = ["tests.servers.fixtures"]`` in the top-level conftest.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pytest

from tests.servers.imap_server import ImapServerHandle, dovecot_binary
from tests.servers.kavenegar_server import KavenegarServerHandle, start_kavenegar_server
from tests.servers.smtp_server import SmtpServerHandle, start_smtp_server

__all__ = [
    "imap_server",
    "kavenegar_server",
    "kavenegar_server_factory",
    "kavenegar_server_pool",
    "smtp_server",
    "smtp_server_factory",
    "smtp_server_pool",
]


class _Server(Protocol):
    def is_alive(self) -> bool: ...
    def reset(self) -> None: ...
    def stop(self) -> None: ...


H = TypeVar("H", bound=_Server)


class _Shared(Generic[H]):
    """One long-lived server, reset for each test and restarted if it died."""

    def __init__(self, start: Callable[[], H]) -> None:
        self._start = start
        self._handle: H | None = None

    def get(self) -> H:
        if self._handle is not None and self._handle.is_alive():
            self._handle.reset()
            return self._handle
        if self._handle is not None:
            self._handle.stop()
        self._handle = self._start()
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.stop()


@pytest.fixture(scope="session")
def smtp_server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Shared[Any]]:
    shared = _Shared(lambda: start_smtp_server(tmp_path_factory.mktemp("smtp")))
    yield shared
    shared.close()


@pytest.fixture(scope="session")
def kavenegar_server_pool(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[_Shared[Any]]:
    def start() -> KavenegarServerHandle:
        log = tmp_path_factory.mktemp("kavenegar") / "kavenegar-server.log"
        return start_kavenegar_server("test-key", log_path=log)

    shared = _Shared(start)
    yield shared
    shared.close()


@pytest.fixture
def smtp_server(smtp_server_pool: _Shared[SmtpServerHandle]) -> SmtpServerHandle:
    """A running SMTP server with an empty spool, no injections and no AUTH."""
    return smtp_server_pool.get()


@pytest.fixture
def kavenegar_server(
    kavenegar_server_pool: _Shared[KavenegarServerHandle],
) -> KavenegarServerHandle:
    """A running Kavenegar server, API key ``test-key``, fresh state and full credit."""
    return kavenegar_server_pool.get()


@pytest.fixture
def smtp_server_factory(tmp_path: Path) -> Iterator[Callable[..., SmtpServerHandle]]:
    """``factory(auth=None, pipelining=True)`` starts a dedicated SMTP server, stopped
    after the test."""
    handles: list[SmtpServerHandle] = []

    def start(
        auth: str | tuple[str, str] | None = None, *, pipelining: bool = True
    ) -> SmtpServerHandle:
        handle = start_smtp_server(tmp_path / f"smtp-{len(handles)}", auth, pipelining=pipelining)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def kavenegar_server_factory(tmp_path: Path) -> Iterator[Callable[..., KavenegarServerHandle]]:
    """``factory(api_key="test-key", credit=..., state_file=None)``: a dedicated server."""
    handles: list[KavenegarServerHandle] = []

    def start(api_key: str = "test-key", **options: Any) -> KavenegarServerHandle:
        options.setdefault("log_path", tmp_path / f"kavenegar-{len(handles)}.log")
        handle = start_kavenegar_server(api_key, **options)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def imap_server() -> Iterator[ImapServerHandle]:
    """A fresh Dovecot IMAP server for the test (installed by `scripts/services`); a
    missing Dovecot fails the test loudly, never skips it."""
    binary = dovecot_binary()
    if binary is None:  # pragma: no cover - environment problem
        pytest.fail("dovecot is not installed (scripts/services installs dovecot-imapd)")
    handle = ImapServerHandle(binary)
    yield handle
    handle.stop()
