"""What the tests of Kavenegar's reports and replies share."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from dispatcher.store.models import Member
from tests.factories import Harness, write_campaign

TEHRAN = ZoneInfo("Asia/Tehran")
NOON = datetime(2025, 12, 21, 12, 0, tzinfo=TEHRAN)
SENDER = "10004346"


def send_sms_campaign(h: Harness, tmp_path: Path, slug: str = "yalda-test") -> None:
    h.send(write_campaign(tmp_path / slug, slug=slug, channels=("sms",), sms="حراج یلدا"))
    h.run_workers()


def messageids(h: Harness) -> dict[int | None, int]:
    """member id -> Kavenegar messageid of its SMS."""
    return {d.member_id: int(d.provider_id or 0) for d in h.deliveries()}


def load_member(h: Harness, member_id: int | None) -> Member:
    with Session(h.engine) as session:
        found = session.get(Member, member_id)
        assert found is not None
        return found
