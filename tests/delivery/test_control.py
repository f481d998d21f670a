"""Campaign control on the real pipeline: Redis and RabbitMQ brokers, worker threads,
SMTP server."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dramatiq import Worker
from sqlalchemy import event

from dispatcher.delivery import control
from dispatcher.delivery.status import campaign_status
from dispatcher.errors import ControlError
from dispatcher.queue.broker import build_broker
from dispatcher.settings import Settings
from dispatcher.store.db import make_engine
from dispatcher.store.models import CampaignState, DeliveryStatus, PausedBy
from dispatcher.workers.email import deliver_email
from tests.conftest import BrokerUnderTest
from tests.factories import Harness, add_member, harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

LEASE = timedelta(seconds=300)


@pytest.fixture
def broker_pipeline(
    make_settings: Callable[..., Settings],
    database_url: str,
    broker_under_test: BrokerUnderTest,
    smtp_server: SmtpServerHandle,
) -> Iterator[Callable[..., Harness]]:
    """`broker_pipeline(**settings)`: a Harness on each broker and the test SMTP server."""
    stack = []

    def create(**overrides: object) -> Harness:
        values: dict[str, object] = {
            "database_url": database_url,
            **broker_under_test.settings,
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_security": "none",
        }
        values.update(overrides)
        settings = make_settings(**values)
        cm = harness(settings, build_broker(settings))
        stack.append(cm)
        return cm.__enter__()

    yield create
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def by_status(h: Harness) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in h.deliveries():
        counts[d.status] = counts.get(d.status, 0) + 1
    return counts


def test_pause_holds_queued_work_back_and_resume_sends_the_rest_once(
    broker_pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = broker_pipeline()
    for i in range(40):
        add_member(h.engine, f"C{i}")
    smtp_server.delay_data(0.05, count=1000)
    campaign = h.send(write_campaign(tmp_path / "c")).campaign
    assert campaign.id is not None
    worker = Worker(h.broker, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        smtp_server.wait_for(5)
        assert control.pause(h.engine, campaign.id, by=PausedBy.PERSON, reason="wrong price")
        h.broker.join("email", timeout=20_000)  # every queued job ran: held, not sent
        held = len(smtp_server.messages())
        assert held < 40
        counts = by_status(h)
        assert counts.get(DeliveryStatus.FAILED, 0) == 0
        assert counts[DeliveryStatus.PENDING] == 40 - held
        status = campaign_status(h.engine, "yalda-test")
        assert status["state"] == "paused"
        assert (status["paused_by"], status["pause_reason"]) == ("person", "wrong price")

        resumed = control.resume(h.engine, h.broker, campaign.id, h.actors, lease=LEASE)
        assert resumed.state == CampaignState.SENDING and resumed.enqueued == 40 - held
        h.broker.join("email", timeout=20_000)
        worker.join()
    finally:
        worker.stop()
    assert sorted(m.rcpt_to for m in smtp_server.messages()) == sorted(
        f"c{i}@example.com" for i in range(40)
    )
    assert control.finish_if_done(h.engine, campaign.id)
    assert campaign_status(h.engine, "yalda-test")["pause_reason"] is None


def test_cancel_skips_what_is_left_and_records_why(
    broker_pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = broker_pipeline()
    for i in range(5):
        add_member(h.engine, f"C{i}")
    campaign = h.send(write_campaign(tmp_path / "c")).campaign
    assert campaign.id is not None
    assert control.cancel(h.engine, campaign.id, reason="sent by mistake") == 5
    h.run_workers()
    assert smtp_server.messages() == []
    assert {d.error_message for d in h.deliveries()} == {"cancelled: sent by mistake"}
    status = campaign_status(h.engine, "yalda-test")
    assert (status["state"], status["cancel_reason"]) == ("cancelled", "sent by mistake")
    with pytest.raises(ControlError):
        control.resume(h.engine, h.broker, campaign.id, h.actors, lease=LEASE)


def test_retry_failed_requeues_only_transient_failures(
    broker_pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = broker_pipeline()
    for name in ("a", "b", "c", "gone"):
        add_member(h.engine, name.upper(), email=f"{name}@example.com")
    campaign = h.send(write_campaign(tmp_path / "c")).campaign
    assert campaign.id is not None
    h.broker.flush_all()
    smtp_server.reject_recipient("gone@example.com")
    smtp_server.inject_temp_failure(code=452, count=2, stage="rcpt", text="4.3.1 mailbox full")
    # Outside a worker each call is the last attempt: 452 leaves "retries exhausted".
    outcomes = [deliver_email(h.runtime, d.id or 0) for d in h.deliveries()]
    assert outcomes == ["failed", "failed", "sent", "failed"]
    assert control.finish_if_done(h.engine, campaign.id)

    assert control.retry_failed(h.engine, h.broker, campaign.id, h.actors) == 2
    assert campaign_status(h.engine, "yalda-test")["state"] == "sending"
    h.run_workers()
    assert sorted(m.rcpt_to for m in smtp_server.messages()) == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    final = {d.member_id: (d.status, d.error_code) for d in h.deliveries()}
    assert sorted(final.values(), key=str) == sorted(
        [("sent", None), ("sent", None), ("sent", None), ("failed", 550)], key=str
    )
    assert control.retry_failed(h.engine, h.broker, campaign.id, h.actors) == 0


def test_an_error_storm_pauses_the_campaign_and_resume_finishes_it(
    broker_pipeline: Callable[..., Harness], smtp_server: SmtpServerHandle, tmp_path: Path
) -> None:
    h = broker_pipeline(max_send_errors=3)
    for i in range(12):
        add_member(h.engine, f"C{i}")
    smtp_server.inject_temp_failure(code=554, count=1000, stage="mail", text="5.7.1 relay denied")
    campaign = h.send(write_campaign(tmp_path / "c")).campaign
    assert campaign.id is not None
    h.run_workers()

    status = campaign_status(h.engine, "yalda-test")
    assert status["state"] == "paused" and status["paused_by"] == "error-storm"
    assert "sends in a row failed" in status["pause_reason"]
    assert "relay denied" in status["pause_reason"]
    counts = by_status(h)
    assert counts[DeliveryStatus.FAILED] <= 3 + 4  # the limit, plus what was in flight
    assert counts[DeliveryStatus.PENDING] >= 12 - 7

    smtp_server.reset()  # the relay is fixed
    control.resume(h.engine, h.broker, campaign.id, h.actors, lease=LEASE)
    h.run_workers()
    assert len(smtp_server.messages()) == counts[DeliveryStatus.PENDING]
    assert by_status(h) == {
        DeliveryStatus.SENT: counts[DeliveryStatus.PENDING],
        DeliveryStatus.FAILED: counts[DeliveryStatus.FAILED],
    }


def test_an_error_storm_holds_this_process_back_while_its_pause_is_written(
    broker_pipeline: Callable[..., Harness],
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a busy database the storm's pause takes a while to be written, and the campaign
    # reads as sending meanwhile: the other threads must not go on failing sends.
    from dispatcher.workers import actor

    written = control.pause

    def slow_pause(*args: Any, **kwargs: Any) -> bool:
        time.sleep(1.0)  # the write lock held by other writers
        return written(*args, **kwargs)

    monkeypatch.setattr(actor, "pause", slow_pause)
    h = broker_pipeline(max_send_errors=3)
    for i in range(12):
        add_member(h.engine, f"C{i}")
    smtp_server.inject_temp_failure(code=554, count=1000, stage="mail", text="5.7.1 relay denied")
    h.send(write_campaign(tmp_path / "c"))
    h.run_workers()

    status = campaign_status(h.engine, "yalda-test")
    assert status["state"] == "paused" and status["paused_by"] == "error-storm"
    counts = by_status(h)
    assert counts[DeliveryStatus.FAILED] <= 3 + 4  # the limit, plus what was in flight
    assert counts[DeliveryStatus.PENDING] >= 12 - 7


def test_a_pause_made_while_finish_if_done_runs_is_never_overwritten(
    pipeline: Callable[..., Harness], database_url: str, tmp_path: Path
) -> None:
    h = pipeline()
    add_member(h.engine, "C1", email="c1@example.com")
    campaign = h.send(write_campaign(tmp_path / "c")).campaign
    h.run_workers()  # sent into the outbox: nothing outstanding, the campaign still sending
    assert campaign.id is not None
    campaign_id = campaign.id
    other = make_engine(database_url)
    paused: list[bool] = []

    def pause(statement: str, kind: str) -> None:
        if not paused and re.search(rf"\b{kind}\b.*\bcampaign\b", statement, re.I | re.S):
            paused.append(control.pause(other, campaign_id, by=PausedBy.PERSON, reason="typo"))

    # A person pauses the campaign from another connection after it was read, or just
    # before it is written: between the check and the write.
    def after_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        pause(statement, "FROM")

    def before_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        pause(statement, "UPDATE")

    event.listen(h.engine, "after_cursor_execute", after_read)
    event.listen(h.engine, "before_cursor_execute", before_write)
    try:
        assert not control.finish_if_done(h.engine, campaign_id)
    finally:
        event.remove(h.engine, "after_cursor_execute", after_read)
        event.remove(h.engine, "before_cursor_execute", before_write)
        other.dispose()
    assert paused == [True]
    status = campaign_status(h.engine, "yalda-test")
    assert (status["state"], status["pause_reason"]) == ("paused", "typo")
