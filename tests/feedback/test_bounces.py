"""Bounces at send time and from reports: hard suppresses, three soft in separate
campaigns within 30 days suppress, a complaint opts out; each recorded once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.members import import_members
from dispatcher.audience.suppression import is_suppressed
from dispatcher.definition.campaign import load_campaign
from dispatcher.delivery.status import campaign_status
from dispatcher.feedback.bounces import record_bounce
from dispatcher.queue.expansion import expand
from dispatcher.store.db import session_scope
from dispatcher.store.models import (
    Bounce,
    BounceKind,
    Channel,
    ConsentEvent,
    Delivery,
    Suppression,
    utcnow,
)
from tests.factories import Harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

KEYS = AddressKeys(b"test-suppression-key")


def _members(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("external_id,email\nA1,gone@example.com\nB1,b@example.com\n")
    import_members(engine, tmp_path / "m.csv", keys=KEYS)


def _campaign(engine: Engine, tmp_path: Path, slug: str) -> dict[str, int]:
    """Expand a campaign; {email address local part: delivery id}."""
    result = expand(
        engine, load_campaign(write_campaign(tmp_path / slug, slug=slug, tags=None)), keys=KEYS
    )
    with Session(engine) as session:
        rows = session.exec(
            select(Delivery).where(Delivery.campaign_id == result.campaign.id)
        ).all()
    return {str(d.member_id): d.id or 0 for d in rows}


def _suppressed(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(s.reason, s.source) for s in session.exec(select(Suppression)).all()]


def test_a_hard_bounce_suppresses_and_the_same_report_counts_once(
    engine: Engine, tmp_path: Path
) -> None:
    _members(engine, tmp_path)
    first = _campaign(engine, tmp_path, "one")
    delivery = min(first.values())
    with session_scope(engine) as db:
        assert record_bounce(
            db, delivery_id=delivery, kind=BounceKind.HARD, report_id="r1", status="5.1.1"
        )
        assert not record_bounce(db, delivery_id=delivery, kind=BounceKind.HARD, report_id="r1")
    assert _suppressed(engine) == [("bounce", "bounce")]
    again = expand(
        engine, load_campaign(write_campaign(tmp_path / "two", slug="two", tags=None)), keys=KEYS
    )
    assert again.eligible == {"email": 1}
    assert again.excluded_by["email"]["suppressed"] == 1


def test_three_soft_bounces_in_separate_campaigns_within_30_days_suppress(
    engine: Engine, tmp_path: Path
) -> None:
    _members(engine, tmp_path)
    now = utcnow()
    deliveries = [min(_campaign(engine, tmp_path, f"c{i}").values()) for i in range(4)]
    with session_scope(engine) as db:
        # an old one does not count; two in one campaign count once
        record_bounce(
            db,
            delivery_id=deliveries[0],
            kind=BounceKind.SOFT,
            report_id="s0",
            now=now - timedelta(days=31),
        )
        record_bounce(db, delivery_id=deliveries[1], kind=BounceKind.SOFT, report_id="s1", now=now)
        record_bounce(db, delivery_id=deliveries[1], kind=BounceKind.SOFT, report_id="s1b", now=now)
        record_bounce(db, delivery_id=deliveries[2], kind=BounceKind.SOFT, report_id="s2", now=now)
    assert _suppressed(engine) == []
    with session_scope(engine) as db:
        record_bounce(db, delivery_id=deliveries[3], kind=BounceKind.SOFT, report_id="s3", now=now)
    assert _suppressed(engine) == [("bounce", "bounce")]


def test_a_complaint_opts_the_member_out_with_source_complaint(
    engine: Engine, tmp_path: Path
) -> None:
    _members(engine, tmp_path)
    delivery = min(_campaign(engine, tmp_path, "one").values())
    with session_scope(engine) as db:
        assert record_bounce(db, delivery_id=delivery, kind=BounceKind.COMPLAINT, report_id="arf1")
    with Session(engine) as session:
        [event] = session.exec(select(ConsentEvent)).all()
    assert (event.opted_in, event.source, event.channel) == (False, "complaint", "email")
    assert _suppressed(engine) == [("complaint", "complaint")]
    status = campaign_status(engine, "one")
    assert (status["email"]["bounced"], status["email"]["complained"]) == (0, 1)


def test_a_5_1_1_at_send_time_suppresses_the_address_for_later_campaigns(
    pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none")
    smtp_server.reject_recipient("gone@example.com")
    _members(h.engine, tmp_path)
    h.send(write_campaign(tmp_path / "one", slug="one", tags=None))
    h.run_workers()

    assert [m.rcpt_to for m in smtp_server.wait_for(1)] == ["b@example.com"]
    failed = [d for d in h.deliveries() if d.status == "failed"]
    assert [(d.error_code, d.error_message) for d in failed] == [(550, "550 5.1.1 no such user")]
    with Session(h.engine) as session:
        [bounce] = session.exec(select(Bounce)).all()
    assert (bounce.kind, bounce.status) == ("hard", "5.1.1")
    assert campaign_status(h.engine, "one")["email"]["bounced"] == 1
    with h.engine.connect() as conn:
        assert is_suppressed(conn, KEYS.email("Gone@Example.com"), Channel.EMAIL)

    later = h.send(write_campaign(tmp_path / "two", slug="two", tags=None))
    assert later.eligible == {"email": 1} and later.excluded_by["email"]["suppressed"] == 1


def test_a_mailbox_full_refusal_is_a_soft_bounce(
    pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_security="none")
    smtp_server.inject_temp_failure(code=552, text="5.2.2 mailbox full", count=1)
    (tmp_path / "m.csv").write_text("external_id,email\nA1,full@example.com\n")
    import_members(h.engine, tmp_path / "m.csv", keys=KEYS)
    h.send(write_campaign(tmp_path / "one", slug="one", tags=None))
    h.run_workers()

    with Session(h.engine) as session:
        [bounce] = session.exec(select(Bounce)).all()
    assert (bounce.kind, bounce.status) == ("soft", "5.2.2")
    assert _suppressed(h.engine) == []
