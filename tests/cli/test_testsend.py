"""`campaign test`: real copies through the real SMTP and Kavenegar test servers, no rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.cli.conftest import Cli, settings_env
from tests.cli.helpers import run
from tests.cli.test_sms import closed_now, kavenegar_env
from tests.factories import Harness, add_member, write_campaign
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


def test_a_template_failing_for_the_member_is_a_failed_copy_and_the_sms_still_goes(
    pipeline: Callable[..., Harness],
    cli: Cli,
    smtp_server: SmtpServerHandle,
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    h = pipeline()
    add_member(h.engine, "M2010", first_name="علی", email="ali@example.com")
    # Divides by zero for this one member, not for the sample members `load` renders for.
    campaign = write_campaign(
        tmp_path / "c",
        channels=("email", "sms"),
        subject="{{ 12 // (0 if member.external_id == 'M2010' else 1) }} حراج",
    )
    env = {**settings_env(h.settings), **smtp_env(smtp_server), **kavenegar_env(kavenegar_server)}
    result = cli(
        "campaign", "test", str(campaign), "--to", "staff@shop.example", "--to", "09121234599",
        "--member", "M۲۰۱۰",  # as typed with Persian digits: found as import stored it
        **env,
    )  # fmt: skip
    assert result.exit_code == 1, (result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "failed email test copy to s***@shop.example: render: email.subject" in result.stdout, (
        result.stderr
    )
    assert "sent sms test copy to +98912***4599" in result.stdout
    [sms] = kavenegar_server.sent()
    assert "علی عزیز" in sms["message"]
    assert smtp_server.messages() == []
