"""The `dispatcher` command's SMS side, as a user runs it, against the Kavenegar server."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.cli.helpers import run
from tests.servers.kavenegar_server import KavenegarServerHandle

SENDER = "10004346"


def kavenegar_env(server: KavenegarServerHandle, **extra: str) -> dict[str, str]:
    return {
        "KAVENEGAR_API_KEY": server.api_key,
        "KAVENEGAR_SENDER": SENDER,
        "KAVENEGAR_BASE_URL": server.base_url,
        **extra,
    }


def closed_now() -> str:
    """A one-hour send window that is closed right now in Tehran."""
    hour = datetime.now(ZoneInfo("Asia/Tehran")).hour
    return f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"


def test_validate_reports_sms_length_and_the_audiences_parts(workdir: Path) -> None:
    before = run(workdir, "campaign", "validate", "campaigns/yalda-1405.toml")
    assert before.returncode == 0, before.stderr
    assert "(email, sms)" in before.stdout
    assert "sms: 129 characters, 2 parts (UCS-2) for a sample member" in before.stdout
    assert "audience unknown" in before.stdout
    assert not (workdir / "dispatcher.db").exists()  # validate changes nothing

    run(workdir, "members", "import", "campaigns/members.csv")
    after = run(workdir, "campaign", "validate", "campaigns/yalda-1405.toml")
    assert "sms audience: 6 members, 12 SMS parts in all" in after.stdout


def test_preview_shows_the_sms_with_its_footer_and_length(workdir: Path) -> None:
    run(workdir, "members", "import", "campaigns/members.csv")
    result = run(workdir, "campaign", "preview", "campaigns/yalda-1405.toml", "--member", "C1002")
    assert result.returncode == 0, result.stderr
    sms = result.stdout.split("sms ─", 1)[1]
    assert "علی عزیز، حراج یلدای فروشگاه نمونه شروع شد" in sms
    assert "shop.example/yalda\nلغو11\n" in sms
    assert "sms: 128 characters, 2 parts (UCS-2)" in sms


def test_send_outside_the_window_does_not_wait_for_the_sms_and_release_sends_them(
    workdir: Path, kavenegar_server: KavenegarServerHandle
) -> None:
    run(workdir, "members", "import", "campaigns/members.csv")
    night = kavenegar_env(kavenegar_server, SMS_SEND_WINDOW=closed_now())
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", **night)
    assert sent.returncode == 0, sent.stderr
    assert "sms transport: kavenegar" in sent.stdout
    assert "sms waiting for the send window" in sent.stdout
    assert kavenegar_server.sent() == []
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["state"] == "sending" and status["email"]["sent"] == 5
    assert status["sms"]["pending"] == 6 and status["sms"]["waiting_until"]

    still_closed = run(workdir, "sms", "release", **night)
    assert "the SMS send window is closed" in still_closed.stdout

    day = kavenegar_env(kavenegar_server, SMS_SEND_WINDOW="00:00-24:00")
    released = run(workdir, "sms", "release", **day)
    assert released.returncode == 0, released.stderr
    assert "6 SMS enqueued" in released.stdout
    assert len(kavenegar_server.sent()) == 6
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["sms"]["sent"] == 6 and status["sms"]["waiting_until"] is None
    assert status["state"] == "done"


def test_send_without_credit_stops_and_says_the_sms_are_paused(
    workdir: Path, kavenegar_server: KavenegarServerHandle
) -> None:
    run(workdir, "members", "import", "campaigns/members.csv")
    kavenegar_server.set_credit(0)
    env = kavenegar_env(kavenegar_server, SMS_SEND_WINDOW="00:00-24:00")
    sent = run(workdir, "campaign", "send", "campaigns/yalda-1405.toml", **env)
    assert sent.returncode == 0, sent.stderr
    assert "sms paused: the Kavenegar account has no credit left" in sent.stdout
    status = json.loads(run(workdir, "campaign", "status", "yalda-1405", "--json").stdout)
    assert status["sms"]["pending"] == 6 and "418" in status["sms"]["paused"]


def test_sms_sync_and_inbox_need_kavenegar(workdir: Path) -> None:
    for verb in ("sync", "inbox"):
        result = run(workdir, "sms", verb)
        assert result.returncode == 1
        assert "KAVENEGAR_API_KEY is not set" in result.stderr


def test_sms_inbox_opts_out_who_replied_laghv(
    workdir: Path, kavenegar_server: KavenegarServerHandle
) -> None:
    run(workdir, "members", "import", "campaigns/members.csv")
    kavenegar_server.add_inbox("09121234567", "لغو", line=SENDER)
    result = run(workdir, "sms", "inbox", **kavenegar_env(kavenegar_server))
    assert result.returncode == 0, result.stderr
    assert "1 opted_out" in result.stdout
    synced = run(workdir, "sms", "sync", **kavenegar_env(kavenegar_server))
    assert synced.returncode == 0 and "0 checked" in synced.stdout
