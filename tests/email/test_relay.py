"""Is the relay there: one connection as a send would open it, against the real test server."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from dispatcher.email.relay import RelayWatch, check_relay
from dispatcher.errors import RelayUnavailable
from dispatcher.settings import Settings
from tests.servers.smtp_server import SmtpServerHandle


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_live_relay_answers(
    make_settings: Callable[..., Settings], smtp_server: SmtpServerHandle
) -> None:
    check_relay(
        make_settings(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none")
    )


def test_a_dead_relay_is_named_with_its_port_and_why(
    make_settings: Callable[..., Settings],
) -> None:
    port = dead_port()
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    with pytest.raises(RelayUnavailable, match=f"127.0.0.1:{port}: cannot connect"):
        check_relay(settings)


def test_the_watch_asks_only_once_sending_has_stalled(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=dead_port(), smtp_security="none")
    watch = RelayWatch(settings, stall_s=0.0)
    assert watch(10) is None  # progress: not asked
    assert watch(9) is None
    reason = watch(9)  # no progress since: asked, and it is dead
    assert reason is not None and "cannot connect" in reason
