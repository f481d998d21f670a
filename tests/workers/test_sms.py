"""The SMS actor, end to end: real database, real Kavenegar-speaking server in its own
process, a real Dramatiq Worker (StubBroker) or `deliver_sms` called directly."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from dramatiq import Message
from sqlmodel import Session

from dispatcher import hold
from dispatcher.audience.consent import opt_out
from dispatcher.delivery.status import campaign_status
from dispatcher.feedback.release import release_waiting_sms
from dispatcher.store.models import ConsentSource, DeliveryStatus, Member
from dispatcher.workers import actor
from dispatcher.workers import sms as sms_worker
from dispatcher.workers.sms import deliver_sms
from tests.eventually import eventually
from tests.factories import Harness, add_member, write_campaign
from tests.servers.kavenegar_server import KavenegarServerHandle

Pipeline = Callable[..., Harness]
TEHRAN = ZoneInfo("Asia/Tehran")
NOON = datetime(2025, 12, 21, 12, 0, tzinfo=TEHRAN)
SENDER = "10004346"
SMS = "{{ member.first_name }} عزیز، حراج یلدا شروع شد"


def kavenegar(server: KavenegarServerHandle, **extra: Any) -> dict[str, Any]:
    return {
        "kavenegar_api_key": server.api_key,
        "kavenegar_sender": SENDER,
        "kavenegar_base_url": server.base_url,
        "kavenegar_timeout": 2.0,
        **extra,
    }


@pytest.fixture
def sms_pipeline(
    pipeline: Pipeline, kavenegar_server: KavenegarServerHandle
) -> Callable[..., Harness]:
    """`sms_pipeline(**settings)`: a harness on Kavenegar, its clock at noon in Tehran."""

    def create(server: KavenegarServerHandle | None = None, **extra: Any) -> Harness:
        h = pipeline(**kavenegar(server or kavenegar_server, **extra))
        h.runtime.clock = lambda: NOON
        return h

    return create


def sms_campaign(tmp_path: Path, *channels: str, slug: str = "yalda-test") -> Path:
    return write_campaign(tmp_path / slug, slug=slug, channels=channels or ("sms",), sms=SMS)


def paths(server: KavenegarServerHandle) -> list[str]:
    """The API methods called, in order: `["send", "statuslocalmessageid", ...]`."""
    return [r["path"].rsplit("/", 1)[1].removesuffix(".json") for r in server.requests()]


def carried(server: KavenegarServerHandle) -> int:
    """The messages the send calls carried: one per `sms/send`, the receptors of each
    `sms/sendarray`."""
    count = 0
    for request in server.requests():
        if request["path"].endswith("/sms/sendarray.json"):
            count += len(json.loads(request["params"]["receptor"]))
        elif request["path"].endswith("/sms/send.json"):
            count += 1
    return count


def member(h: Harness, member_id: int | None) -> Member:
    with Session(h.engine) as session:
        found = session.get(Member, member_id)
        assert found is not None
        return found


def test_every_reachable_member_gets_exactly_one_sms_with_the_footer(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", first_name="مریم", mobile="+989121234567")
    add_member(h.engine, "C2", first_name="علی", mobile="+989351234567")
    add_member(h.engine, "C3", mobile="+989121234568", sms_opt_in=False)
    add_member(h.engine, "C4", mobile=None)
    add_member(h.engine, "C5", mobile="+989121234569", mobile_invalid=True)

    result = h.send(sms_campaign(tmp_path, "email", "sms"))
    h.run_workers()

    assert result.eligible == {"email": 5, "sms": 2}
    sent = sorted(kavenegar_server.sent(), key=lambda m: m["receptor"])
    assert [m["receptor"] for m in sent] == ["09121234567", "09351234567"]
    assert sent[0]["message"] == "مریم عزیز، حراج یلدا شروع شد\nلغو11"
    assert sent[0]["sender"] == SENDER
    deliveries = {d.provider_id: d for d in h.deliveries() if d.channel == "sms"}
    for message in sent:
        record = deliveries[str(message["messageid"])]
        assert message["localid"] == str(record.id)  # Kavenegar de-duplicates on it
        assert (record.status, record.cost, record.provider_status) == ("sent", 1, 1)
    status = campaign_status(h.engine, "yalda-test")
    assert status["sms"]["sent"] == 2 and status["sms"]["excluded"] == 3
    assert status["email"]["sent"] == 5


def test_many_deliveries_go_in_sendarray_calls_each_recorded_once_with_its_own_message_id(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    """Real Redis broker and limiter, 16 worker threads, 20 Kavenegar calls/s: the
    messages that wait for a call's slot go in that call."""
    h = sms_pipeline(redis_url=redis_url, redis_namespace=redis_namespace, kavenegar_rate_limit=20)
    members = 60
    for i in range(members):
        add_member(h.engine, f"C{i}", first_name=f"م{i}", mobile=f"+9891212345{i:02d}")
    h.send(sms_campaign(tmp_path))
    h.run_workers(threads=16)

    requests = kavenegar_server.requests()
    sizes = [
        len(json.loads(r["params"]["receptor"])) if "/sms/sendarray" in r["path"] else 1
        for r in requests
    ]
    assert any(size > 1 for size in sizes)  # sendarray calls, several messages each
    assert sum(sizes) == members and len(requests) < members / 2
    assert {r["path"].rsplit("/", 1)[1] for r in requests} <= {"send.json", "sendarray.json"}
    sent = kavenegar_server.sent()
    receptors = sorted(m["receptor"] for m in sent)
    assert receptors == [f"091212345{i:02d}" for i in range(members)]  # one each
    by_localid = {m["localid"]: m for m in sent}
    deliveries = h.deliveries()
    assert len(deliveries) == members and len(by_localid) == members
    for d in deliveries:
        accepted = by_localid[str(d.id)]
        assert (d.status, d.attempts) == (DeliveryStatus.SENT, 1)
        assert d.provider_id == str(accepted["messageid"])  # its own message, not another's
        assert accepted["message"].startswith(f"{member(h, d.member_id).first_name} عزیز")
    assert len({d.provider_id for d in deliveries}) == members


def test_the_queue_message_carries_the_delivery_id_only(
    sms_pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    [raw] = list(h.broker.queues["sms"].queue)
    message = Message.decode(raw)
    assert (message.args, message.kwargs) == ((delivery.id,), {})
    assert b"98912" not in raw and "مریم".encode() not in raw


def test_opted_out_member_gets_no_sms(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    stays = add_member(h.engine, "C1", mobile="+989121234567")
    leaves = add_member(h.engine, "C2", mobile="+989121234568")
    h.send(sms_campaign(tmp_path))
    assert leaves.id is not None
    with Session(h.engine) as session:  # e.g. replied «لغو» after the campaign was expanded
        opt_out(session, leaves.id, "sms", ConsentSource.SMS_KEYWORD)  # type: ignore[arg-type]
        session.commit()
    h.run_workers()

    assert [m["receptor"] for m in kavenegar_server.sent()] == ["09121234567"]
    by_member = {d.member_id: (d.status, d.error_message) for d in h.deliveries()}
    assert by_member == {stays.id: ("sent", None), leaves.id: ("skipped", "opted out")}


def test_a_repeated_job_sends_once(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    h.actors["sms"].send(delivery.id)  # the at-least-once queue hands it out again
    h.actors["sms"].send(delivery.id)
    h.run_workers()
    assert len(kavenegar_server.sent()) == 1
    assert paths(kavenegar_server) == ["send"]
    assert h.deliveries()[0].attempts == 1


def test_a_timeout_after_kavenegar_accepted_does_not_send_twice(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    h = sms_pipeline(kavenegar_timeout=1.0)
    add_member(h.engine, "C1", mobile="+989121234567")
    kavenegar_server.accept_then_hang(seconds=3.0)  # accepted, then the answer is lost
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    [accepted] = kavenegar_server.sent()
    [delivery] = h.deliveries()
    assert paths(kavenegar_server) == ["send", "statuslocalmessageid"]  # asked, not resent
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.provider_id == str(accepted["messageid"])
    assert delivery.attempts == 2


@pytest.fixture
def no_retries() -> Iterator[None]:
    """`send_sms` without retries: a delivery that needed one would fail."""
    from dispatcher.workers.sms import send_sms

    send_sms.options.update(max_retries=0)
    yield
    send_sms.options.pop("max_retries")


def test_451_slows_down_and_sends_again_without_using_a_retry(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    no_retries: None,
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    kavenegar_server.fail_next(451, count=2)
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    [delivery] = h.deliveries()
    assert (delivery.status, delivery.attempts, delivery.error_code) == ("sent", 3, None)
    assert len(kavenegar_server.sent()) == 1
    assert paths(kavenegar_server) == [
        "send",
        "statuslocalmessageid",  # a 451 may mean "a repeated call": asked before resending
        "send",
        "statuslocalmessageid",
        "send",
    ]
    limiter = h.runtime.guard("kavenegar").limiter
    assert limiter.current() is not None and limiter.current() < 50  # type: ignore[operator]


def test_kavenegar_451s_back_the_shared_rate_off_and_it_recovers(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    no_retries: None,
) -> None:
    """Real Redis broker and limiter: a burst of 451s halves KAVENEGAR_RATE_LIMIT for
    every worker, each delivery is still sent exactly once with no retry spent, the
    campaign is not paused, and the rate grows back."""
    h = sms_pipeline(redis_url=redis_url, redis_namespace=redis_namespace, kavenegar_rate_limit=200)
    for i in range(20):
        add_member(h.engine, f"C{i}", mobile=f"+9891212345{i:02d}")
    kavenegar_server.fail_next(451, count=12)
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    assert {d.status for d in h.deliveries()} == {DeliveryStatus.SENT}
    receptors = sorted(m["receptor"] for m in kavenegar_server.sent())
    assert receptors == [f"091212345{i:02d}" for i in range(20)]  # each once
    assert campaign_status(h.engine, "yalda-test")["state"] == "sending"  # not paused
    client = redis.Redis.from_url(redis_url)
    assert client.exists(f"{redis_namespace}:rate:kavenegar:aimd")  # it did back off
    client.close()
    limiter = h.runtime.guard("kavenegar").limiter
    slowed = limiter.current()
    assert slowed is not None and slowed < 200
    recovering = eventually(lambda: (now := limiter.current()) is not None and slowed < now and now)
    assert recovering > slowed  # additive increase: +10/s


def test_a_transient_error_on_the_last_attempt_fails_the_delivery(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    assert delivery.id is not None
    kavenegar_server.fail_next(409)
    assert deliver_sms(h.runtime, delivery.id) == "failed"  # outside a worker: last attempt
    [delivery] = h.deliveries()
    assert delivery.error_code == 409
    assert (delivery.error_message or "").startswith("retries exhausted")


def test_no_credit_pauses_the_campaigns_sms_and_says_why(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    for i in range(3):
        add_member(h.engine, f"C{i}", mobile=f"+98912123456{i}")
    kavenegar_server.set_credit(0)
    h.send(sms_campaign(tmp_path))
    h.run_workers()  # no exception escapes: no retry is spent on it

    status = campaign_status(h.engine, "yalda-test")["sms"]
    assert status["pending"] == 3 and status["failed"] == 0
    assert "no credit" in status["paused"] and "418" in status["paused"]
    # Jobs already running when the first 418 came (four worker threads) met it too,
    # in the same call or the next; each handed its delivery back. None was retried.
    tried = len(paths(kavenegar_server))
    assert 1 <= tried <= 3 and sum(d.attempts for d in h.deliveries()) == carried(kavenegar_server)
    for d in h.deliveries():  # once paused, the jobs leave the deliveries alone
        h.actors["sms"].send(d.id)
    h.run_workers()
    assert len(paths(kavenegar_server)) == tried

    kavenegar_server.set_credit(1000)
    [campaign_id] = {d.campaign_id for d in h.deliveries()}
    assert hold.resume(h.engine, campaign_id, "sms")
    for d in h.deliveries():
        assert d.id is not None
        assert deliver_sms(h.runtime, d.id) == "sent"
    assert len(kavenegar_server.sent()) == 3
    assert campaign_status(h.engine, "yalda-test")["sms"]["paused"] is None


def test_a_rejected_api_key_pauses_the_campaign(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server_factory: Callable[..., KavenegarServerHandle],
    tmp_path: Path,
) -> None:
    server = kavenegar_server_factory(api_key="the-real-key")
    h = sms_pipeline(server, kavenegar_api_key="a-revoked-key")
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    h.run_workers()
    status = campaign_status(h.engine, "yalda-test")["sms"]
    assert "API key is not valid" in status["paused"] and status["pending"] == 1


def test_an_invalid_receptor_fails_the_delivery_and_flags_the_mobile(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    bad = add_member(h.engine, "C1", mobile="+989120000000")
    add_member(h.engine, "C2", mobile="+989121234567")
    kavenegar_server.invalid_receptor("09120000000")
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    by_member = {d.member_id: d for d in h.deliveries()}
    assert bad.id is not None
    assert (by_member[bad.id].status, by_member[bad.id].error_code) == ("failed", 411)
    assert member(h, bad.id).mobile_invalid
    assert len(kavenegar_server.sent()) == 1
    later = h.send(sms_campaign(tmp_path, slug="next-campaign"))
    assert later.eligible == {"sms": 1}  # the flagged number is excluded from now on


def test_another_4xx_fails_the_delivery_with_code_and_message(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    kavenegar_server.fail_next(402)
    h.send(sms_campaign(tmp_path))
    h.run_workers()
    [delivery] = h.deliveries()
    assert (delivery.status, delivery.error_code) == ("failed", 402)
    assert "402 عملیات ناموفق بود" in (delivery.error_message or "")


def test_too_many_failed_sms_in_a_row_pause_the_campaign(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline(max_send_errors=3)
    for i in range(10):
        add_member(h.engine, f"C{i}", mobile=f"+9891212345{i:02d}")
    kavenegar_server.fail_next(402, count=10)
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    status = campaign_status(h.engine, "yalda-test")
    assert (status["state"], status["paused_by"]) == ("paused", "error-storm")
    assert "sms sends in a row failed" in status["pause_reason"]
    assert "402" in status["pause_reason"]
    # The fourth failure paused it; jobs already past the check (four threads) finish.
    assert 4 <= status["sms"]["failed"] <= 7
    assert status["sms"]["pending"] == 10 - status["sms"]["failed"]
    assert kavenegar_server.sent() == []


def test_an_sms_due_at_23_tehran_waits_for_08(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    h.runtime.clock = lambda: datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
    for i in range(3):
        add_member(h.engine, f"C{i}", mobile=f"+98912123456{i}")
    h.send(sms_campaign(tmp_path, "email", "sms"))
    h.run_workers()  # the messages are consumed, not parked in a delay queue

    assert kavenegar_server.requests() == []
    status = campaign_status(h.engine, "yalda-test")
    assert status["email"]["sent"] == 3  # email has no legal hours
    assert status["sms"]["pending"] == 3 and status["sms"]["sending"] == 0
    assert status["sms"]["waiting_until"] == "2025-12-22T04:30:00+00:00"  # 08:00 Tehran
    assert all(d.attempts == 0 for d in h.deliveries() if d.channel == "sms")
    assert sum(len(q.queue) for q in h.broker.queues.values()) == 0

    h.runtime.clock = lambda: datetime(2025, 12, 22, 7, 59, tzinfo=TEHRAN)
    assert (
        release_waiting_sms(h.engine, h.settings, h.broker, h.actors["sms"], now=h.runtime.clock())
        == {}
    )

    h.runtime.clock = lambda: datetime(2025, 12, 22, 8, 0, tzinfo=TEHRAN)
    released = release_waiting_sms(
        h.engine, h.settings, h.broker, h.actors["sms"], now=h.runtime.clock()
    )
    assert list(released.values()) == [3]
    assert (
        release_waiting_sms(h.engine, h.settings, h.broker, h.actors["sms"], now=h.runtime.clock())
        == {}
    )  # once
    h.run_workers()
    assert len(kavenegar_server.sent()) == 3
    status = campaign_status(h.engine, "yalda-test")
    assert status["sms"]["sent"] == 3 and status["sms"]["waiting_until"] is None


def test_a_paused_campaign_is_not_released_by_the_window(
    sms_pipeline: Callable[..., Harness], tmp_path: Path
) -> None:
    h = sms_pipeline()
    h.runtime.clock = lambda: datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    h.run_workers()
    hold.pause(h.engine, h.deliveries()[0].campaign_id, "sms", "the account has no credit left")
    h.runtime.clock = lambda: NOON.replace(day=22)
    assert (
        release_waiting_sms(h.engine, h.settings, h.broker, h.actors["sms"], now=h.runtime.clock())
        == {}
    )


def test_outbox_mode_keeps_the_send_window_as_kavenegar_does(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    h = pipeline()  # no KAVENEGAR_API_KEY: outbox mode, no phone is reached
    h.runtime.clock = lambda: datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
    add_member(h.engine, "C1", first_name="مریم", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    h.run_workers()
    outbox = tmp_path / "outbox" / "sms" / "yalda-test.jsonl"
    assert not outbox.exists()  # 23:00 in Tehran: nothing "sent" at night
    [delivery] = h.deliveries()
    assert delivery.status == DeliveryStatus.PENDING
    with h.engine.connect() as conn:
        assert hold.holds_of(conn, delivery.campaign_id)["sms"].waiting_until is not None

    h.runtime.clock = lambda: NOON.replace(day=22)
    assert release_waiting_sms(
        h.engine, h.settings, h.broker, h.actors["sms"], now=h.runtime.clock()
    ) == {delivery.campaign_id: 1}
    h.run_workers()
    [line] = outbox.read_text("utf-8").splitlines()
    assert "مریم عزیز، حراج یلدا شروع شد\\nلغو11" in line
    assert h.deliveries()[0].status == DeliveryStatus.SENT


def test_outbox_mode_writes_json_lines_at_any_hour_with_an_all_day_window(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    h = pipeline(sms_send_window="00:00-24:00")
    h.runtime.clock = lambda: datetime(2025, 12, 21, 23, 0, tzinfo=TEHRAN)
    add_member(h.engine, "C1", first_name="مریم", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    h.run_workers()
    [line] = (tmp_path / "outbox" / "sms" / "yalda-test.jsonl").read_text("utf-8").splitlines()
    assert "مریم عزیز، حراج یلدا شروع شد\\nلغو11" in line
    assert h.deliveries()[0].status == DeliveryStatus.SENT


def test_logs_mask_mobiles_and_never_show_the_key(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server_factory: Callable[..., KavenegarServerHandle],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fast_retries: None,
) -> None:
    key = "Zq9SECRETkavenegarKEYx7"
    server = kavenegar_server_factory(api_key=key)
    h = sms_pipeline(server, kavenegar_timeout=1.0)
    caplog.set_level(logging.DEBUG)
    add_member(h.engine, "C1", mobile="+989121234567")
    add_member(h.engine, "C2", mobile="+989120000000")
    server.invalid_receptor("09120000000")
    server.fail_next(451)
    server.accept_then_hang(seconds=2.5)
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    assert key not in caplog.text
    assert "+989121234567" not in caplog.text and "09121234567" not in caplog.text
    assert "+98912***4567" in caplog.text
    assert {d.status for d in h.deliveries()} == {"sent", "failed"}


def test_the_clock_is_utc_aware_by_default(pipeline: Pipeline) -> None:
    h = pipeline()
    assert h.runtime.clock().tzinfo is not None
    assert abs((h.runtime.clock() - datetime.now(UTC)).total_seconds()) < 5


def test_in_outbox_mode_an_opt_out_during_the_wait_for_a_rate_slot_is_honoured(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox takes a rate slot per message, before the claim (as email does)."""
    h = pipeline()
    h.runtime.clock = lambda: NOON
    leaves = add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    assert delivery.id is not None and leaves.id is not None
    member_id = leaves.id

    def opt_out_while_waiting() -> None:
        with Session(h.engine) as session:
            opt_out(session, member_id, "sms", ConsentSource.SMS_KEYWORD)  # type: ignore[arg-type]
            session.commit()

    monkeypatch.setattr(h.runtime.guard("kavenegar"), "before_send", opt_out_while_waiting)
    assert deliver_sms(h.runtime, delivery.id) == "skipped"
    assert not (tmp_path / "outbox" / "sms" / "yalda-test.jsonl").exists()
    assert (h.deliveries()[0].status, h.deliveries()[0].error_message) == ("skipped", "opted out")


def test_through_kavenegar_the_rate_slot_is_taken_per_call_after_the_claim(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    delivery_id = delivery.id
    assert delivery_id is not None
    status_at_the_slot: list[str] = []

    def slot() -> None:
        loaded = h.runtime.deliveries.load(delivery_id)
        assert loaded is not None
        status_at_the_slot.append(loaded.delivery.status)

    monkeypatch.setattr(h.runtime.guard("kavenegar"), "before_send", slot)
    assert deliver_sms(h.runtime, delivery_id) == "sent"
    assert status_at_the_slot == [DeliveryStatus.SENDING]  # one slot, for the call
    assert paths(kavenegar_server) == ["send"]


def test_a_redis_error_while_counting_a_failure_still_records_the_delivery(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = sms_pipeline()
    bad = add_member(h.engine, "C1", mobile="+989120000000")
    kavenegar_server.invalid_receptor("09120000000")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    assert delivery.id is not None

    def redis_down(*args: object) -> bool:
        raise redis.ConnectionError("redis is down")

    monkeypatch.setattr(h.runtime.guard("kavenegar"), "failed", redis_down)
    assert deliver_sms(h.runtime, delivery.id) == "failed"
    assert (h.deliveries()[0].status, h.deliveries()[0].error_code) == ("failed", 411)
    assert member(h, bad.id).mobile_invalid


def test_an_sms_over_sms_max_parts_for_a_member_fails_and_is_not_sent(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline(sms_max_parts=2)
    add_member(h.engine, "C1", first_name="مریم", mobile="+989121234567")
    add_member(h.engine, "C2", first_name="نام " * 60, mobile="+989351234567")
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    assert [m["receptor"] for m in kavenegar_server.sent()] == ["09121234567"]
    by_member = {d.member_id: d for d in h.deliveries()}
    long_one = by_member[max(by_member)]
    assert long_one.status == "failed"
    assert "over SMS_MAX_PARTS (2)" in (long_one.error_message or "")


def test_an_sms_template_error_for_a_member_fails_the_delivery_without_a_traceback(
    sms_pipeline: Callable[..., Harness], kavenegar_server: KavenegarServerHandle, tmp_path: Path
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "Z1", first_name="مریم", mobile="+989121234567")
    sms = "{% if member.external_id.startswith('Z') %}{{ 'x' * 10**8 }}{% endif %}سلام"
    path = write_campaign(tmp_path / "c", channels=("sms",), sms=sms)
    h.send(path)  # valid for the sample members
    h.run_workers()

    assert kavenegar_server.sent() == []
    [delivery] = h.deliveries()
    assert delivery.status == "failed" and (delivery.error_message or "").startswith("render:")


def test_a_14_found_on_a_retry_opts_the_member_out(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    fast_retries: None,
) -> None:
    h = sms_pipeline(kavenegar_timeout=1.0)
    added = add_member(h.engine, "C1", mobile="+989121234567")
    kavenegar_server.set_default_status(14)  # the number blocks advertising SMS
    kavenegar_server.accept_then_hang(seconds=3.0)  # accepted, then the answer is lost
    h.send(sms_campaign(tmp_path))
    h.run_workers()

    assert paths(kavenegar_server) == ["send", "statuslocalmessageid"]  # found on the retry
    [delivery] = h.deliveries()
    assert (delivery.status, delivery.provider_status) == (DeliveryStatus.SENT, 14)
    found = member(h, added.id)
    assert (found.sms_opt_in, found.sms_optout_source) == (False, "provider")


def test_an_sms_costs_two_database_round_trips_as_an_email_does(
    sms_pipeline: Callable[..., Harness],
    kavenegar_server: KavenegarServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = sms_pipeline()
    add_member(h.engine, "C1", mobile="+989121234567")
    h.send(sms_campaign(tmp_path))
    [delivery] = h.deliveries()
    assert delivery.id is not None
    monkeypatch.setattr(sms_worker.SMS, "careful", actor.Careful())  # no unsendable job before
    db = h.runtime.deliveries
    before = db.requests

    assert deliver_sms(h.runtime, delivery.id) == "sent"
    assert db.requests - before == 2  # load, check and claim in one; then `sent`
    assert len(kavenegar_server.sent()) == 1
