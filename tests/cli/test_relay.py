"""`campaign send` in inline mode against a relay that is dead, refuses us, or dies."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

from tests.cli.helpers import run, start
from tests.servers.smtp_server import SmtpServerHandle

CAMPAIGN = "campaigns/yalda-1405.toml"


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


def relay(host: str, port: int, **extra: str) -> dict[str, str]:
    return {"SMTP_HOST": host, "SMTP_PORT": str(port), "SMTP_SECURITY": "none", **extra}


def test_a_dead_relay_is_one_line_and_exit_2_and_nothing_is_recorded(
    workdir: Path, smtp_server: SmtpServerHandle
) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    port = dead_port()
    sent = run(workdir, "campaign", "send", CAMPAIGN, **relay("127.0.0.1", port))
    assert sent.returncode == 2, sent.stdout + sent.stderr
    assert f"SMTP relay 127.0.0.1:{port}: cannot connect" in sent.stderr
    assert len(sent.stderr.strip().splitlines()) == 1 and "Traceback" not in sent.stderr
    listed = run(workdir, "campaign", "status", "yalda-1405")
    assert listed.returncode != 0  # not recorded: the slug is still free

    again = run(workdir, "campaign", "send", CAMPAIGN, **relay(smtp_server.host, smtp_server.port))
    assert again.returncode == 0, again.stderr
    assert len(smtp_server.messages()) > 0


def test_a_refused_login_is_one_line_and_exit_2(
    workdir: Path, smtp_server_factory: Callable[..., SmtpServerHandle]
) -> None:
    server = smtp_server_factory(auth="shop:right")
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    env = relay(server.host, server.port, SMTP_USERNAME="shop", SMTP_PASSWORD="wrong")
    sent = run(workdir, "campaign", "send", CAMPAIGN, **env)
    assert sent.returncode == 2, sent.stdout + sent.stderr
    assert f"SMTP relay {server.host}:{server.port}: AUTH refused (535" in sent.stderr
    assert "wrong" not in sent.stderr and "Traceback" not in sent.stderr


def test_a_relay_that_dies_mid_run_is_said_once_and_the_run_ends_non_zero(
    workdir: Path, smtp_server_factory: Callable[..., SmtpServerHandle]
) -> None:
    server = smtp_server_factory()
    rows = "".join(f"C{i},Member{i},m{i}@example.com,1,newsletter\n" for i in range(300))
    (workdir / "m.csv").write_text("external_id,first_name,email,email_opt_in,tags\n" + rows)
    assert run(workdir, "members", "import", "m.csv").returncode == 0
    server.delay_data(seconds=0.05, count=10_000)  # a run long enough to kill the relay in
    proc = start(workdir, "campaign", "send", CAMPAIGN, **relay(server.host, server.port))
    try:
        server.wait_for(5, timeout=30)
        server.stop()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 1, out + err
    assert err.count(f"SMTP relay {server.host}:{server.port}") == 1
    assert "campaign resume yalda-1405" in err
    assert "Traceback" not in err and "unhandled exception" not in err
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    email = status["email"]
    assert email["sent"] >= 5 and email["pending"] > 0 and email["sending"] == 0
    assert "pending" in out and "sent" in out  # the counts table
