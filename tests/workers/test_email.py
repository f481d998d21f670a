"""The email actor, end to end: real database, real SMTP server in its own process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import col

from dispatcher.delivery.status import campaign_status
from dispatcher.email.verp import delivery_of_message_id
from dispatcher.store.models import Delivery, DeliveryStatus
from dispatcher.workers import actor
from dispatcher.workers import email as email_worker
from dispatcher.workers.email import deliver_email
from tests.eventually import eventually
from tests.factories import HTML, Harness, add_member, update_member, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

Pipeline = Callable[..., Harness]


def smtp(server: SmtpServerHandle, **extra: object) -> dict[str, object]:
    return {"smtp_host": server.host, "smtp_port": server.port, "smtp_security": "none", **extra}


@pytest.fixture(params=["inline", "redis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def broker(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings that select each broker in turn: in-process, Redis, RabbitMQ."""
    if request.param == "inline":
        return {}
    if request.param == "redis":
        return {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_namespace": request.getfixturevalue("redis_namespace"),
        }
    return {"broker_url": request.getfixturevalue("rabbitmq_url")}


def test_every_reachable_member_gets_exactly_one_email(
    pipeline: Pipeline, broker: dict[str, object], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server), **broker)
    add_member(h.engine, "C1", email="maryam@example.com")
    add_member(h.engine, "C2", email="ali@example.com")
    add_member(h.engine, "C3", email="zahra@example.com", email_opt_in=False)
    add_member(h.engine, "C4", email=None)
    add_member(h.engine, "C5", email="vip@example.com", tags=["vip"])

    result = h.send(write_campaign(tmp_path / "c", tags=["newsletter"]))
    h.run_workers()

    assert result.eligible == {"email": 2} and result.excluded == {"email": 2}
    received = sorted(m.rcpt_to for m in smtp_server.wait_for(2))
    assert received == ["ali@example.com", "maryam@example.com"]
    status = campaign_status(h.engine, "yalda-test")
    assert status["email"] == {
        "pending": 0,
        "sending": 0,
        "sent": 2,
        "skipped": 0,
        "failed": 0,
        "excluded": 2,
        "excluded_by": {"opted_out": 1, "no_address": 1, "duplicate_address": 0, "suppressed": 0},
        "bounced": 0,
        "complained": 0,
    }


def test_headers_and_rtl_body_are_right(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    member = add_member(h.engine, "C1", email="maryam@example.com", first_name="مریم")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()

    [spooled] = smtp_server.wait_for(1)
    msg = spooled.parsed
    [delivery] = h.deliveries()
    assert spooled.mail_from == "news@shop.example"
    assert msg["From"] == "فروشگاه نمونه <news@shop.example>"
    assert msg["To"] == "maryam@example.com"
    assert msg["Subject"] == "مریم عزیز، حراج یلدا"
    assert delivery_of_message_id(msg["Message-ID"], b"test-suppression-key") == delivery.id
    assert msg["List-Id"] == "حراج شب یلدا <yalda-test.shop.example>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = msg["List-Unsubscribe"].strip().strip("<>")  # folded when long
    assert unsubscribe.startswith("https://shop.example/u/")
    assert h.runtime.signer.verify(unsubscribe.rsplit("/", 1)[1]).member_id == member.id
    assert "maryam" not in unsubscribe
    text, html = (p.get_content() for p in msg.iter_parts())
    assert '<html lang="fa" dir="rtl">' in html and "مریم عزیز" in html
    assert f'href="{unsubscribe}"' in html
    assert unsubscribe in text


def test_member_who_opts_out_after_expansion_is_skipped(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    stays = add_member(h.engine, "C1", email="stays@example.com")
    leaves = add_member(h.engine, "C2", email="leaves@example.com")
    h.send(write_campaign(tmp_path / "c"))
    assert leaves.id is not None
    update_member(h.engine, leaves.id, email_opt_in=False, email_optout_source="link")
    h.run_workers()

    assert [m.rcpt_to for m in smtp_server.wait_for(1)] == ["stays@example.com"]
    by_member = {d.member_id: d.status for d in h.deliveries()}
    assert by_member == {stays.id: "sent", leaves.id: "skipped"}


def test_a_changed_email_after_expansion_is_the_one_used(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    member = add_member(h.engine, "C1", email="old@example.com")
    h.send(write_campaign(tmp_path / "c"))
    assert member.id is not None
    update_member(h.engine, member.id, email="new@example.com")
    h.run_workers()
    assert [m.rcpt_to for m in smtp_server.wait_for(1)] == ["new@example.com"]


def test_sending_the_same_slug_twice_sends_nothing_new(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    campaign = write_campaign(tmp_path / "c")
    assert h.send(campaign).created
    h.run_workers()
    add_member(h.engine, "C2")
    again = h.send(campaign)
    h.run_workers()
    assert not again.created
    assert len(smtp_server.messages()) == 1
    assert len(h.deliveries()) == 1


def test_a_job_delivered_twice_sends_once(
    pipeline: Pipeline, broker: dict[str, object], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server), **broker)
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    [delivery] = h.deliveries()
    h.actors["email"].send(delivery.id)  # the at-least-once queue hands it out again
    h.actors["email"].send(delivery.id)
    h.run_workers()
    assert len(smtp_server.messages()) == 1
    assert h.deliveries()[0].attempts == 1


def test_smtp_4xx_is_retried_and_then_sent(
    pipeline: Pipeline,
    broker: dict[str, object],
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    h = pipeline(**smtp(smtp_server), **broker)
    add_member(h.engine, "C1")
    smtp_server.inject_temp_failure(code=451, count=2, stage="rcpt")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 3
    assert len(smtp_server.messages()) == 1


def test_a_dropped_connection_is_retried_and_sent_once(
    pipeline: Pipeline,
    broker: dict[str, object],
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    h = pipeline(**smtp(smtp_server), **broker)
    add_member(h.engine, "C1")
    smtp_server.drop_after_data(count=1)  # the relay hangs up before answering DATA
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 2
    assert len(smtp_server.messages()) == 1


def test_a_transient_failure_with_no_retry_left_marks_the_delivery_failed(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    """A direct call has no message to retry: its transient failure is final."""
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    [delivery] = h.deliveries()
    assert delivery.id is not None
    smtp_server.drop_after_data(count=1)  # transient, and not a "slow down" answer
    assert deliver_email(h.runtime, delivery.id) == "failed"
    [failed] = h.deliveries()
    assert failed.status == DeliveryStatus.FAILED
    assert "retries exhausted" in (failed.error_message or "")
    assert smtp_server.messages() == []


def test_smtp_5xx_for_the_recipient_marks_the_delivery_failed_with_the_reason(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="gone@example.com")
    add_member(h.engine, "C2", email="here@example.com")
    smtp_server.reject_recipient("gone@example.com")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    by_status = {d.status: d for d in h.deliveries()}
    failed = by_status[DeliveryStatus.FAILED]
    assert failed.error_code == 550 and "no such user" in (failed.error_message or "")
    assert by_status[DeliveryStatus.SENT]
    assert [m.rcpt_to for m in smtp_server.messages()] == ["here@example.com"]


def test_connections_are_kept_open_and_reused(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server, smtp_connections=2))
    for i in range(30):
        add_member(h.engine, f"C{i}")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    assert len(smtp_server.wait_for(30)) == 30
    assert smtp_server.connection_count() <= 2


def test_smtp_auth_is_used_when_configured(
    pipeline: Pipeline, smtp_server_factory: Callable[..., SmtpServerHandle], tmp_path: Path
) -> None:
    server = smtp_server_factory(auth=("shop", "s3cret-password"))
    h = pipeline(**smtp(server, smtp_username="shop", smtp_password="s3cret-password"))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    assert len(server.wait_for(1)) == 1
    assert "s3cret-password" not in repr(h.runtime.email_transport)
    assert "s3cret-password" not in repr(h.settings)


def test_outbox_mode_writes_one_eml_per_message(pipeline: Pipeline, tmp_path: Path) -> None:
    h = pipeline()  # no SMTP_HOST: outbox mode
    add_member(h.engine, "C1")
    add_member(h.engine, "C2")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()
    files = sorted((tmp_path / "outbox" / "email").glob("*.eml"))
    assert [f.name for f in files] == [f"yalda-test-{d.id}.eml" for d in h.deliveries()]
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in files[0].read_bytes()


def only(h: Harness) -> int:
    [delivery] = h.deliveries()
    assert delivery.id is not None
    return delivery.id


def test_a_relay_reply_quoting_the_recipient_is_stored_masked(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="maryam.private@example.com")
    h.send(write_campaign(tmp_path / "c"))
    text = "5.1.1 <maryam.private@example.com>: mailbox unavailable"
    smtp_server.inject_temp_failure(code=550, stage="rcpt", text=text)
    assert deliver_email(h.runtime, only(h)) == "failed"
    [failed] = h.deliveries()
    assert failed.error_code == 550 and "mailbox unavailable" in (failed.error_message or "")
    assert "maryam.private" not in (failed.error_message or "")


def test_an_opt_out_during_the_wait_for_a_rate_slot_is_honoured(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = pipeline(**smtp(smtp_server))
    member = add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    assert member.id is not None
    member_id = member.id
    careful = actor.Careful()
    careful.start()  # the careful path: load and check before the rate slot
    monkeypatch.setattr(email_worker.EMAIL, "careful", careful)
    guard = h.runtime.guard("smtp")

    def opt_out_while_waiting() -> None:
        update_member(h.engine, member_id, email_opt_in=False, email_optout_source="link")

    monkeypatch.setattr(guard, "before_send", opt_out_while_waiting)
    assert deliver_email(h.runtime, only(h)) == "skipped"
    assert h.deliveries()[0].status == DeliveryStatus.SKIPPED
    assert smtp_server.messages() == []


def test_a_send_with_no_outcome_in_time_is_cancelled_and_handed_back(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    monkeypatch.setattr(actor, "WAIT_S", 0.5)
    smtp_server.delay_data(seconds=1.5)
    assert deliver_email(h.runtime, only(h)) == "failed"  # a direct call: no retry left
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.FAILED  # not left `sending`
    assert "retries exhausted" in (delivery.error_message or "")
    # Once the client has hung up, the server cancels the DATA it was still handling:
    # nothing can be stored after that.
    eventually(lambda: smtp_server.closed_count() == smtp_server.connection_count())
    assert smtp_server.messages() == []  # the send was cancelled, its connection closed
    assert h.deliveries()[0].status == DeliveryStatus.FAILED


def test_a_delivery_taken_back_during_its_send_is_logged(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    delivery_id = only(h)
    smtp_server.delay_data(seconds=1.0)

    def take_back() -> None:  # as the lease does with a delivery `sending` for too long
        with h.engine.begin() as conn:
            conn.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id)
                .values(status=DeliveryStatus.PENDING)
            )

    timer = threading.Timer(0.3, take_back)
    timer.start()
    with caplog.at_level(logging.ERROR, logger="dispatcher.email"):
        assert deliver_email(h.runtime, delivery_id) == "sent"
    timer.join()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"delivery {delivery_id}: sent, but it was no longer 'sending' to record it"
    ]


def test_a_redis_error_while_counting_a_failure_still_records_the_delivery(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="gone@example.com")
    smtp_server.reject_recipient("gone@example.com")
    h.send(write_campaign(tmp_path / "c"))

    def redis_down(*args: object) -> bool:
        raise redis.ConnectionError("redis is down")

    monkeypatch.setattr(h.runtime.guard("smtp"), "failed", redis_down)
    assert deliver_email(h.runtime, only(h)) == "failed"
    assert h.deliveries()[0].status == DeliveryStatus.FAILED


def test_a_template_that_fails_for_one_member_fails_only_that_delivery(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    fine = add_member(h.engine, "C1", email="fine@example.com")
    odd = add_member(h.engine, "C2", email="odd@example.com", first_name="Odd")
    html = HTML.replace("</p>", '{% if member.first_name == "Odd" %}{{ nope }}{% endif %}</p>', 1)
    h.send(write_campaign(tmp_path / "c", html=html))
    h.run_workers()

    assert [m.rcpt_to for m in smtp_server.wait_for(1)] == ["fine@example.com"]
    by_member = {d.member_id: d for d in h.deliveries()}
    assert by_member[fine.id].status == "sent"
    assert by_member[odd.id].status == "failed"
    assert (by_member[odd.id].error_message or "").startswith("render: ")


def test_a_campaign_that_cannot_be_prepared_hands_its_delivery_back(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))

    def broken(campaign: object) -> None:
        raise RuntimeError("templates unreadable")

    monkeypatch.setattr(email_worker.EMAIL, "careful", actor.Careful())  # the fast way
    monkeypatch.setattr(h.runtime, "compiled_if_cached", lambda campaign: None)
    monkeypatch.setattr(h.runtime, "compiled", broken)
    with pytest.raises(RuntimeError, match="templates unreadable"):
        deliver_email(h.runtime, only(h))  # raised: Dramatiq retries the job
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.PENDING  # claimable by that retry
    assert delivery.error_message == "could not prepare the campaign"
    assert smtp_server.messages() == []


def test_a_database_error_after_the_relay_accepted_does_not_hand_the_delivery_back(
    pipeline: Pipeline,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1")
    h.send(write_campaign(tmp_path / "c"))
    monkeypatch.setattr(actor, "RECORD_RETRY_S", (0.05, 0.05))
    blips: list[int] = []

    async def database_blip(delivery_id: int, **values: object) -> bool:
        blips.append(delivery_id)  # as a failover would: the commit never happens
        raise OperationalError("UPDATE delivery ...", None, Exception("connection lost"))

    monkeypatch.setattr(h.runtime.deliveries, "mark_sent_async", database_blip)
    delivery_id = only(h)
    assert deliver_email(h.runtime, delivery_id) == "sent"  # recorded on the next try

    assert blips == [delivery_id]
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.SENT and delivery.provider_id
    assert len(smtp_server.wait_for(1)) == 1
    h.run_workers()  # nothing is sent again
    assert len(smtp_server.messages()) == 1


def test_a_long_ascii_subject_reaches_the_relay_folded(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="long@example.com", first_name="A" * 1200)
    h.send(write_campaign(tmp_path / "c", subject="{{ member.first_name }}, the sale is on"))
    h.run_workers()

    [spooled] = smtp_server.wait_for(1)
    assert spooled.parsed["Subject"] == "A" * 1200 + ", the sale is on"
    head = spooled.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert [line for line in head if len(line) > 78] == []
    assert [d.status for d in h.deliveries()] == [DeliveryStatus.SENT]


def test_a_message_without_the_unsubscribe_link_fails_and_counts_towards_the_error_storm(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(max_send_errors=3, **smtp(smtp_server))
    for i in range(8):
        add_member(h.engine, f"C{i}", email=f"m{i}@example.net")
    html = (
        '{% if not member.email.endswith(".net") %}{% extends "email_layout.html" %}{% endif %}'
        "<p>the link only for the sample members</p>"
    )
    h.send(write_campaign(tmp_path / "c", html=html))
    h.run_workers()

    assert smtp_server.messages() == []
    failed = [d for d in h.deliveries() if d.status == DeliveryStatus.FAILED]
    assert failed and all("no visible unsubscribe link" in (d.error_message or "") for d in failed)
    status = campaign_status(h.engine, "yalda-test")
    assert (status["state"], status["paused_by"]) == ("paused", "error-storm")


def test_international_domains_are_sent_idna_encoded(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    smtp_server.offer_smtputf8(False)  # an IDNA domain needs no SMTPUTF8
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="user@münchen.de")
    add_member(h.engine, "C2", email="other@xn--mnchen-3ya.de")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()

    envelopes = smtp_server.envelopes()
    assert sorted(e["rcpt_to"] for e in envelopes) == [
        "other@xn--mnchen-3ya.de",
        "user@xn--mnchen-3ya.de",
    ]
    assert all(e["mail_options"] == [] for e in envelopes)
    assert {m.parsed["To"] for m in smtp_server.messages()} == {
        "user@xn--mnchen-3ya.de",
        "other@xn--mnchen-3ya.de",
    }
    assert [d.status for d in h.deliveries()] == [DeliveryStatus.SENT] * 2


def test_a_non_ascii_local_part_goes_with_smtputf8_when_the_relay_offers_it(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="üser@münchen.de")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()

    [envelope] = smtp_server.envelopes()
    assert envelope["rcpt_to"] == "üser@xn--mnchen-3ya.de"
    assert "SMTPUTF8" in envelope["mail_options"]
    assert [d.status for d in h.deliveries()] == [DeliveryStatus.SENT]


def test_a_non_ascii_local_part_fails_with_a_clear_reason_without_smtputf8(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    smtp_server.offer_smtputf8(False)
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="üser@example.com")
    add_member(h.engine, "C2", email="plain@example.com")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()

    assert [m.rcpt_to for m in smtp_server.messages()] == ["plain@example.com"]
    failed, sent = sorted(h.deliveries(), key=lambda d: d.status)
    assert (failed.status, sent.status) == (DeliveryStatus.FAILED, DeliveryStatus.SENT)
    assert "non-ASCII local part" in (failed.error_message or "")
    assert "does not offer SMTPUTF8" in (failed.error_message or "")


def test_a_campaign_sends_from_its_own_sender_with_a_reply_to(
    pipeline: Pipeline, smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = pipeline(**smtp(smtp_server))
    add_member(h.engine, "C1", email="maryam@example.com")
    path = write_campaign(tmp_path / "c")
    with path.open("a", encoding="utf-8") as toml:
        toml.write('from = "باشگاه مشتریان <club@shop.example>"\nreply_to = "help@shop.example"\n')
    h.send(path)
    h.run_workers()

    [spooled] = smtp_server.wait_for(1)
    assert spooled.parsed["From"] == "باشگاه مشتریان <club@shop.example>"
    assert spooled.parsed["Reply-To"] == "help@shop.example"
    assert spooled.mail_from == "news@shop.example"  # the envelope stays MAIL_FROM's


def test_an_ab_variant_is_sent_from_its_own_sender() -> None:
    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.definition.measuring import AbSpec
    from dispatcher.email.mime import MessageHeaders
    from dispatcher.store.models import Channel
    from dispatcher.workers.email import variant_headers

    headers = MessageHeaders.for_campaign(
        mail_from="فروشگاه <news@shop.example>", slug="s", campaign_name="n"
    )
    ab = AbSpec(subjects=["a", "b"], froms=["News <news@shop.example>", "Club <club@shop.example>"])
    spec = CampaignSpec(slug="s", name="n", channels=[Channel.EMAIL], ab=ab)
    assert variant_headers(headers, spec, "B").from_header == "Club <club@shop.example>"
    assert variant_headers(headers, spec, None) is headers
    plain = CampaignSpec(slug="s", name="n", channels=[Channel.EMAIL])
    assert variant_headers(headers, plain, "B") is headers
