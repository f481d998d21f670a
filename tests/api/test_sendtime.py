"""A change made through the API between a campaign's expansion and its send is what the
send follows: the send-time check reads the member as they are then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from tests.factories import Harness, write_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle

NOON = datetime(2025, 12, 21, 12, 0, tzinfo=ZoneInfo("Asia/Tehran"))  # in the SMS window
SMS = "{{ member.first_name }} عزیز، حراج یلدا شروع شد"


def sms_pipeline(
    pipeline: Callable[..., Harness], server: KavenegarServerHandle, tmp_path: Path
) -> Harness:
    h = pipeline(
        kavenegar_api_key=server.api_key,
        kavenegar_sender="10004346",
        kavenegar_base_url=server.base_url,
        kavenegar_timeout=2.0,
    )
    h.runtime.clock = lambda: NOON
    return h


def test_a_mobile_changed_after_expansion_gets_the_sms_at_the_new_number(
    api: httpx.Client,
    pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    h = sms_pipeline(pipeline, kavenegar_server, tmp_path)
    api.put("/api/v1/members/C1", json={"mobile": "09121234567", "tags": ["newsletter"]})
    campaign = write_campaign(tmp_path / "c", channels=("sms",), sms=SMS)
    assert h.send(campaign).eligible == {"sms": 1}  # expanded: one pending SMS

    changed = api.put("/api/v1/members/C1", json={"mobile": "0935 123 4567"})
    assert changed.status_code == 200
    h.run_workers()

    assert [m["receptor"] for m in kavenegar_server.sent()] == ["09351234567"]


def test_a_member_erased_after_expansion_gets_nothing(
    api: httpx.Client,
    pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
) -> None:
    h = sms_pipeline(pipeline, kavenegar_server, tmp_path)
    for external_id, mobile in (("GONE", "09121234567"), ("STAYS", "09121234568")):
        api.put(
            f"/api/v1/members/{external_id}",
            json={
                "email": f"{external_id.lower()}@example.com",
                "mobile": mobile,
                "tags": ["newsletter"],
            },
        )
    campaign = write_campaign(tmp_path / "c", channels=("email", "sms"), sms=SMS)
    assert h.send(campaign).eligible == {"email": 2, "sms": 2}

    assert api.delete("/api/v1/members/GONE").status_code == 200
    h.run_workers()

    assert [m["receptor"] for m in kavenegar_server.sent()] == ["09121234568"]
    mail = b"".join(path.read_bytes() for path in (tmp_path / "outbox").rglob("*.eml"))
    assert b"stays@example.com" in mail and b"gone@example.com" not in mail
    statuses = sorted((d.member_id is None, d.status) for d in h.deliveries())
    assert statuses == [(False, "sent"), (False, "sent"), (True, "skipped"), (True, "skipped")]
