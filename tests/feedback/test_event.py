"""dispatcher/feedback/event.py: every provider event through one function, which does
what the event means, once."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from dispatcher.audience.addresses import AddressKeys
from dispatcher.audience.suppression import is_suppressed
from dispatcher.errors import InvalidRecipientError, TransientDeliveryError
from dispatcher.feedback.event import (
    EventKind,
    ProviderEvent,
    record,
    record_send_failure,
    send_failure,
)
from dispatcher.store.db import session_scope
from dispatcher.store.models import (
    Bounce,
    Campaign,
    Channel,
    ConsentEvent,
    Delivery,
    DeliveryStatus,
    FailureKind,
    Member,
)
from tests.factories import add_member

KEYS = AddressKeys(b"test-suppression-key")
MOBILE = "+989121234567"


def member(engine: Engine, external_id: str = "C1") -> Member:
    email = f"{external_id.lower()}@example.com"
    return add_member(
        engine,
        external_id,
        email=email,
        email_key=KEYS.email(email),
        mobile=MOBILE,
        mobile_key=KEYS.mobile(MOBILE),
    )


def delivery(engine: Engine, member_id: int | None, channel: str, status: str) -> int:
    with Session(engine) as session:
        campaign = Campaign(slug=f"c-{member_id}-{channel}", name="c", channels=channel)
        session.add(campaign)
        session.flush()
        assert campaign.id is not None
        row = Delivery(
            campaign_id=campaign.id,
            member_id=member_id,
            channel=channel,
            status=status,
            failure_kind=FailureKind.RETRIES_EXHAUSTED if status == "failed" else None,
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def recorded(engine: Engine, event: ProviderEvent) -> bool:
    with session_scope(engine) as session:
        return record(session, event)


def consent_sources(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [(e.channel, e.source) for e in session.exec(select(ConsentEvent)).all()]


def test_blocked_opts_the_member_out_of_sms_as_the_provider_once(engine: Engine) -> None:
    m = member(engine)
    assert m.id is not None
    event = ProviderEvent(EventKind.BLOCKED, Channel.SMS, member_id=m.id)
    assert recorded(engine, event)
    assert not recorded(engine, event)  # opted out already: nothing more
    assert consent_sources(engine) == [("sms", "provider")]
    with engine.connect() as conn:
        assert is_suppressed(conn, KEYS.mobile(MOBILE), Channel.SMS)


def test_a_stop_reply_opts_the_member_out_of_sms_by_keyword(engine: Engine) -> None:
    m = member(engine)
    assert m.id is not None
    assert recorded(engine, ProviderEvent(EventKind.REPLIED_STOP, Channel.SMS, member_id=m.id))
    assert consent_sources(engine) == [("sms", "sms-keyword")]


def test_a_hard_bounce_is_recorded_once_and_suppresses_the_address(engine: Engine) -> None:
    m = member(engine)
    d = delivery(engine, m.id, "email", DeliveryStatus.SENT)
    bounce = ProviderEvent(
        EventKind.BOUNCED, Channel.EMAIL, delivery_id=d, report_id="r1", hard=True, status="5.1.1"
    )
    assert recorded(engine, bounce)
    assert not recorded(engine, bounce)  # the same report: once
    with Session(engine) as session:
        [row] = session.exec(select(Bounce)).all()
    assert (row.kind, row.status, row.delivery_id) == ("hard", "5.1.1", d)
    with engine.connect() as conn:
        assert is_suppressed(conn, KEYS.email("c1@example.com"), Channel.EMAIL)


def test_a_complaint_opts_the_member_out_of_email_for_the_campaign(engine: Engine) -> None:
    m = member(engine)
    d = delivery(engine, m.id, "email", DeliveryStatus.SENT)
    assert recorded(
        engine, ProviderEvent(EventKind.COMPLAINED, Channel.EMAIL, delivery_id=d, report_id="a1")
    )
    with Session(engine) as session:
        [event] = session.exec(select(ConsentEvent)).all()
        campaign_id = session.get(Delivery, d).campaign_id  # type: ignore[union-attr]
    assert (event.channel, event.source, event.campaign_id) == ("email", "complaint", campaign_id)


def test_delivered_moves_a_failed_delivery_to_sent_and_nothing_else(engine: Engine) -> None:
    m = member(engine)
    failed = delivery(engine, m.id, "sms", DeliveryStatus.FAILED)
    event = ProviderEvent(
        EventKind.DELIVERED, Channel.SMS, delivery_id=failed, provider_id="8792", provider_status=1
    )
    assert recorded(engine, event)
    assert not recorded(engine, event)  # sent already
    with Session(engine) as session:
        row = session.get(Delivery, failed)
        assert row is not None
        assert (row.status, row.provider_id, row.failure_kind) == ("sent", "8792", None)


def test_a_refusal_at_send_time_is_a_bounce_and_a_lost_connection_is_not(
    engine: Engine,
) -> None:
    m = member(engine)
    d = delivery(engine, m.id, "email", DeliveryStatus.FAILED)
    assert send_failure(d, TransientDeliveryError("connection lost")) is None
    unknown = InvalidRecipientError("550 5.1.1 no such user", code=550, status="5.1.1")
    event = send_failure(d, unknown)
    assert event is not None and (event.kind, event.hard) == (EventKind.BOUNCED, True)
    assert record_send_failure(engine, d, unknown)
    assert not record_send_failure(engine, d, unknown)  # `smtp:<delivery>`: once
