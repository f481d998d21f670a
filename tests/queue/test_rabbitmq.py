"""The RabbitMQ path: the broker chosen by BROKER_URL, enqueue in batches with publisher
confirms, ids only in the queue, workers consume them. Against a real RabbitMQ, in a
virtual host of the test session's own."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pika
import pytest
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed

from dispatcher.queue.broker import build_broker, enqueue_ids, enqueue_many, queue_is_empty
from dispatcher.queue.rabbitmq import ConfirmedPublisher
from dispatcher.settings import Settings
from tests.conftest import delete_rabbitmq_queues
from tests.factories import add_member, harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle

pytestmark = pytest.mark.rabbitmq


def drain(url: str, queue: str) -> list[bytes]:
    """Every message body waiting in `queue` (taken off it)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    bodies = []
    try:
        channel = connection.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def test_an_amqp_broker_url_selects_rabbitmq_with_confirms(
    make_settings: Callable[..., Settings], rabbitmq_url: str
) -> None:
    settings = make_settings(broker_url=rabbitmq_url)
    broker = build_broker(settings)
    assert isinstance(broker, RabbitmqBroker) and broker.confirm_delivery
    assert settings.broker == "rabbitmq" and not settings.inline
    assert settings.redis_url is None  # no Redis: the counters are per process
    broker.close()


def test_enqueue_ids_is_on_the_broker_when_it_returns_byte_for_byte_as_dramatiq(
    make_settings: Callable[..., Settings], rabbitmq_url: str
) -> None:
    settings = make_settings(broker_url=rabbitmq_url)
    broker = build_broker(settings)
    with harness(settings, broker) as h:
        actor = h.actors["email"]
        assert enqueue_ids(broker, actor, range(1, 20_001)) == 20_000
        bodies = drain(rabbitmq_url, "email")  # another connection: confirmed, not buffered
    assert len(bodies) == 20_000
    for delivery_id, raw in zip(range(1, 20_001), bodies, strict=True):
        got = Message.decode(raw)
        assert uuid.UUID(got.message_id).version == 4
        same = dataclasses.replace(
            actor.message(delivery_id),
            message_id=got.message_id,
            message_timestamp=got.message_timestamp,
        )
        assert same.encode() == raw


def test_enqueue_many_declares_a_queue_the_broker_lost(
    make_settings: Callable[..., Settings], rabbitmq_url: str
) -> None:
    settings = make_settings(broker_url=rabbitmq_url)
    broker = build_broker(settings)
    with harness(settings, broker) as h:
        actor = h.actors["email"]
        assert enqueue_many(broker, [actor.message(1)]) == 1
        delete_rabbitmq_queues(rabbitmq_url)  # a RabbitMQ restarted without its queues
        assert enqueue_many(broker, (actor.message(i) for i in range(2, 5))) == 3
        assert [json.loads(b)["args"] for b in drain(rabbitmq_url, "email")] == [[2], [3], [4]]


def test_an_unreachable_rabbitmq_fails_the_enqueue_loudly() -> None:
    parameters = pika.URLParameters("amqp://guest:guest@127.0.0.1:1/?connection_attempts=1")
    with pytest.raises(ConnectionClosed):
        ConfirmedPublisher(parameters, ["email"]).run([("email", b"{}")])


def test_a_publish_to_a_queue_that_is_not_there_fails_instead_of_vanishing(
    rabbitmq_url: str,
) -> None:
    parameters = pika.URLParameters(rabbitmq_url)
    with pytest.raises(ConnectionClosed, match="no queue nowhere"):
        ConfirmedPublisher(parameters, ["email"]).run([("email", b"{}"), ("nowhere", b"{}")])


def test_queue_is_empty_counts_queued_and_delayed_messages(
    make_settings: Callable[..., Settings], rabbitmq_url: str
) -> None:
    settings = make_settings(broker_url=rabbitmq_url)
    broker = build_broker(settings)
    with harness(settings, broker) as h:
        actor = h.actors["email"]
        assert queue_is_empty(broker, "email") is True
        broker.enqueue(actor.message(1), delay=60_000)
        assert queue_is_empty(broker, "email") is False
        broker.flush_all()
        enqueue_ids(broker, actor, [2])
        assert queue_is_empty(broker, "email") is False


def test_campaign_over_rabbitmq_carries_only_delivery_ids_and_sends_each_once(
    make_settings: Callable[..., Settings],
    rabbitmq_url: str,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        broker_url=rabbitmq_url,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    with harness(settings, build_broker(settings)) as h:
        for i in range(25):
            add_member(h.engine, f"C{i}", email=f"member{i}@example.com", first_name="علی")
        h.send(write_campaign(tmp_path / "c"))
        bodies = drain(rabbitmq_url, "email")
        assert len(bodies) == 25
        ids = {d.id for d in h.deliveries()}
        for raw in bodies:
            message = json.loads(raw)
            assert message["args"] in ([i] for i in ids) and message["kwargs"] == {}
            assert b"@" not in raw and "علی".encode() not in raw
        enqueue_ids(h.broker, h.actors["email"], sorted(i for i in ids if i is not None))

        h.run_workers()
        assert sorted(m.rcpt_to for m in smtp_server.wait_for(25)) == sorted(
            f"member{i}@example.com" for i in range(25)
        )
        assert {d.status for d in h.deliveries()} == {"sent"}
