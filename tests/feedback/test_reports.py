"""Kavenegar's delivery reports (`sms sync`), against the real Kavenegar-speaking
server and a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from dispatcher.delivery.control import find, retry_failed
from dispatcher.delivery.privacy import erase_member
from dispatcher.delivery.status import campaign_status
from dispatcher.errors import ConfigurationError
from dispatcher.feedback.replies import read_inbox
from dispatcher.feedback.reports import sync_statuses
from dispatcher.settings import Settings
from dispatcher.store.models import Campaign, ConsentEvent, Delivery, FailureKind
from dispatcher.workers.sms import deliver_sms
from tests.factories import Harness, add_member, harness, write_campaign
from tests.feedback.sms import NOON, SENDER, load_member, messageids, send_sms_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle


def test_sync_records_final_states_and_14_opts_the_member_out(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    got = add_member(h.engine, "C1", mobile="+989121234561")
    missed = add_member(h.engine, "C2", mobile="+989121234562")
    blocks = add_member(h.engine, "C3", mobile="+989121234563")
    queued = add_member(h.engine, "C4", mobile="+989121234564")
    send_sms_campaign(h, tmp_path)
    ids = messageids(h)
    kavenegar_server.set_status(ids[got.id], 10)
    kavenegar_server.set_status(ids[missed.id], 11)
    kavenegar_server.set_status(ids[blocks.id], 14)
    kavenegar_server.set_status(ids[queued.id], 4)  # at the operator: not final yet

    counts = sync_statuses(h.runtime)

    assert counts == {
        "checked": 4,
        "delivered": 1,
        "undelivered": 1,
        "failed": 0,
        "cancelled": 0,
        "blocked": 1,
        "in_progress": 1,
        "unknown": 0,
        "opted_out": 1,
        "found_sent": 0,
    }
    by_member = {d.member_id: d.provider_status for d in h.deliveries()}
    assert by_member == {got.id: 10, missed.id: 11, blocks.id: 14, queued.id: 4}
    blocked = load_member(h, blocks.id)
    assert (blocked.sms_opt_in, blocked.sms_optout_source) == (False, "provider")
    with Session(h.engine) as session:
        [event] = session.exec(select(ConsentEvent)).all()
    assert (event.member_id, event.channel, event.source) == (blocks.id, "sms", "provider")
    sms = campaign_status(h.engine, "yalda-test")["sms"]
    assert (sms["sent"], sms["delivered"], sms["undelivered"]) == (4, 1, 2)


def test_final_states_are_not_asked_for_again(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    first = add_member(h.engine, "C1", mobile="+989121234561")
    second = add_member(h.engine, "C2", mobile="+989121234562")
    send_sms_campaign(h, tmp_path)
    kavenegar_server.set_status(messageids(h)[first.id], 10)
    assert sync_statuses(h.runtime)["checked"] == 2
    before = len(kavenegar_server.requests())
    assert sync_statuses(h.runtime)["checked"] == 1  # only the one still queued
    [call] = kavenegar_server.requests()[before:]
    assert call["params"]["messageid"] == str(messageids(h)[second.id])


def test_a_campaign_finished_long_ago_is_not_synced(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    add_member(h.engine, "C1", mobile="+989121234561")
    send_sms_campaign(h, tmp_path)
    with Session(h.engine) as session:
        [campaign] = session.exec(select(Campaign)).all()
        campaign.state = "done"
        campaign.finished_at = NOON - timedelta(days=10)
        session.add(campaign)
        session.commit()
    assert sync_statuses(h.runtime)["checked"] == 0


def test_sync_and_inbox_need_kavenegar(pipeline_settings: Settings) -> None:
    with harness(pipeline_settings) as outbox:
        with pytest.raises(ConfigurationError, match="KAVENEGAR_API_KEY"):
            sync_statuses(outbox.runtime)
        with pytest.raises(ConfigurationError, match="KAVENEGAR_API_KEY"):
            read_inbox(outbox.runtime)


@pytest.fixture
def pipeline_settings(make_settings: Callable[..., Settings], sqlite_url: str) -> Settings:
    return make_settings(database_url=sqlite_url)


def test_an_sms_accepted_but_unanswered_on_its_last_attempt_is_found_sent(
    sms_harness: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_harness(kavenegar_timeout=1.0)  # one second for Kavenegar to answer
    add_member(h.engine, "C1", mobile="+989121234561")
    h.send(write_campaign(tmp_path / "c", channels=("sms",), sms="حراج یلدا"))
    [delivery] = h.deliveries()
    assert delivery.id is not None
    kavenegar_server.accept_then_hang(seconds=2.0)  # accepted, then the answer is lost
    assert deliver_sms(h.runtime, delivery.id) == "failed"  # outside a worker: last attempt
    [delivery] = h.deliveries()
    assert delivery.error_code is None
    assert (delivery.error_message or "").startswith("retries exhausted")

    assert sync_statuses(h.runtime)["found_sent"] == 0  # not yet: Kavenegar may be at it
    counts = sync_statuses(h.runtime, settle_after=timedelta(0))

    [accepted] = kavenegar_server.sent()
    [delivery] = h.deliveries()
    assert counts["found_sent"] == 1
    assert delivery.status == "sent"
    assert delivery.provider_id == str(accepted["messageid"])
    assert (delivery.error_code, delivery.error_message) == (None, None)
    assert campaign_status(h.engine, "yalda-test")["sms"]["sent"] == 1


def test_an_sms_kavenegar_never_got_stays_failed_and_is_asked_about_once(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    add_member(h.engine, "C1", mobile="+989121234561")
    add_member(h.engine, "C2", mobile="+989121234562")
    add_member(h.engine, "C3", mobile="+989121234563")
    h.send(write_campaign(tmp_path / "c", channels=("sms",), sms="حراج یلدا"))
    lost, busy, invalid = (d.id for d in h.deliveries())
    assert lost is not None and busy is not None and invalid is not None
    exhausted, refused = FailureKind.RETRIES_EXHAUSTED, FailureKind.INVALID_RECIPIENT
    for delivery_id, code, reason, kind in (
        (lost, None, "retries exhausted: connection", exhausted),  # no answer
        (busy, 502, "retries exhausted: 502", exhausted),  # a proxy's: maybe accepted behind it
        (invalid, 411, "invalid receptor", refused),  # Kavenegar's refusal: nothing to ask
    ):
        assert h.runtime.deliveries.claim(delivery_id)
        h.runtime.deliveries.mark_failed(delivery_id, code, reason, kind)

    def asked() -> int:
        return sum("statuslocalmessageid" in r["path"] for r in kavenegar_server.requests())

    assert sync_statuses(h.runtime, settle_after=timedelta(0))["found_sent"] == 0
    assert asked() == 2  # the two whose retries ran out
    assert {d.status for d in h.deliveries()} == {"failed"}
    assert sync_statuses(h.runtime, settle_after=timedelta(0))["found_sent"] == 0
    assert asked() == 2  # not again ...
    retry_failed(h.engine, h.broker, find(h.engine, "yalda-test").id or 0, h.actors)
    assert {d.provider_status for d in h.deliveries()} == {None}  # ... until a new attempt


def test_a_14_or_a_keyword_reply_stops_every_member_with_that_mobile(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    first = add_member(h.engine, "A1", mobile="+989121234561")
    add_member(h.engine, "A2", mobile="+989121234561")  # one family, one phone
    add_member(h.engine, "B1", mobile="+989121234562")
    add_member(h.engine, "B2", mobile="+989121234562")
    send_sms_campaign(h, tmp_path, "one")  # one SMS per phone; keys filled
    assert sorted(m["receptor"] for m in kavenegar_server.sent()) == [
        "09121234561",
        "09121234562",
    ]
    kavenegar_server.set_status(messageids(h)[first.id], 14)
    assert sync_statuses(h.runtime)["opted_out"] == 1
    kavenegar_server.add_inbox("09121234562", "لغو", line=SENDER)
    assert read_inbox(h.runtime)["opted_out"] >= 1

    before = len(kavenegar_server.sent())
    send_sms_campaign(h, tmp_path, "two")
    assert len(kavenegar_server.sent()) == before  # neither phone is texted again
    sms = campaign_status(h.engine, "two")["sms"]
    assert sms["excluded_by"]["suppressed"] + sms["excluded_by"]["opted_out"] == 4


def test_an_sms_in_flight_when_its_member_is_erased_keeps_no_id_and_sync_goes_on(
    h: Harness, kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    erased = add_member(h.engine, "C1", mobile="+989121234561")
    blocks = add_member(h.engine, "C2", mobile="+989121234562")
    h.send(write_campaign(tmp_path / "c", channels=("sms",), sms="حراج یلدا"))
    by_member = {d.member_id: d.id for d in h.deliveries()}
    in_flight = by_member[erased.id]
    assert in_flight is not None and h.runtime.deliveries.claim(in_flight)  # sending ...
    erase_member(h.engine, "C1")  # ... when the shop erases the member
    sent = h.runtime.sms_transport.send(
        receptor="+989121234561", message="حراج یلدا", localid=in_flight, campaign="yalda-test"
    )
    provider_id = str(sent.messageid)
    assert h.runtime.deliveries.mark_sent(in_flight, provider_id=provider_id, provider_status=1)
    h.run_workers()  # the other member's SMS
    [late] = [d for d in h.deliveries() if d.id == in_flight]
    assert (late.status, late.member_id, late.provider_id) == ("sent", None, None)

    # A row as the old code left it (erased, provider id kept) is skipped, too.
    with Session(h.engine) as session:
        row = session.get(Delivery, in_flight)
        assert row is not None
        row.provider_id = provider_id
        session.add(row)
        session.commit()
    kavenegar_server.set_default_status(14)
    counts = sync_statuses(h.runtime)
    assert (counts["checked"], counts["blocked"], counts["opted_out"]) == (1, 1, 1)
    assert load_member(h, blocks.id).sms_opt_in is False
