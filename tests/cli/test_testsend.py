"""`campaign test`: real copies through the real SMTP and Kavenegar test servers, no rows."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import run
from tests.cli.test_sms import closed_now, kavenegar_env
from tests.servers.kavenegar_server import KavenegarServerHandle
from tests.servers.smtp_server import SmtpServerHandle

YALDA = "campaigns/yalda-1405.toml"


def smtp_env(server: SmtpServerHandle) -> dict[str, str]:
    return {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}


def test_test_copies_arrive_by_email_and_sms_and_leave_no_rows(
    workdir: Path, smtp_server: SmtpServerHandle, kavenegar_server: KavenegarServerHandle
) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    env = {**smtp_env(smtp_server), **kavenegar_env(kavenegar_server)}
    env["SMS_SEND_WINDOW"] = "00:00-24:00"
    result = run(
        workdir,
        "campaign",
        "test",
        YALDA,
        "--to",
        "staff@shop.example",
        "--to",
        "۰۹۱۲ ۱۲۳ ۴۵۹۹",
        "--member",
        "C1002",
        **env,
    )
    assert result.returncode == 0, result.stderr
    assert "sent email test copy to s***@shop.example" in result.stdout
    assert "sent sms test copy to +98912***4599" in result.stdout

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_to == "staff@shop.example"
    assert mail.parsed["Subject"].startswith("[آزمایشی] علی عزیز")
    html = mail.parsed.get_body(("html",)).get_content()
    assert "/u/test-copy" in html  # the link unsubscribes no one
    [sms] = kavenegar_server.sent()
    assert sms["receptor"] == "09121234599"
    assert "علی عزیز" in sms["message"]

    listed = run(workdir, "campaign", "list", "--json")
    assert json.loads(listed.stdout) == []  # no campaign, no deliveries: the slug is free
    sent = run(workdir, "campaign", "send", YALDA)
    assert sent.returncode == 0 and "nothing new" not in sent.stdout


def test_consent_is_not_checked_for_a_test_copy(
    workdir: Path, smtp_server: SmtpServerHandle
) -> None:
    assert run(workdir, "members", "import", "campaigns/members.csv").returncode == 0
    result = run(
        workdir, "campaign", "test", YALDA, "--to", "optedout@shop.example", **smtp_env(smtp_server)
    )
    assert result.returncode == 0, result.stderr
    [mail] = smtp_server.wait_for(1)
    assert "مریم" in mail.parsed["Subject"]  # the sample member, as preview uses


def test_outside_the_sms_window_a_test_sms_is_not_sent(
    workdir: Path, kavenegar_server: KavenegarServerHandle
) -> None:
    env = kavenegar_env(kavenegar_server, SMS_SEND_WINDOW=closed_now())
    result = run(workdir, "campaign", "test", YALDA, "--to", "09121234599", **env)
    assert result.returncode == 0, result.stderr
    assert "held sms test copy" in result.stdout and "outside the SMS send window" in result.stdout
    assert kavenegar_server.sent() == []


def test_an_address_that_is_neither_email_nor_mobile_is_refused(workdir: Path) -> None:
    result = run(workdir, "campaign", "test", YALDA, "--to", "02188776655", "--to", "a@b")
    assert result.returncode == 2
    assert "--to '02188776655'" in result.stderr and "--to 'a@b'" in result.stderr
