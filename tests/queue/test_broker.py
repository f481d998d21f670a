"""The Redis broker path: pipelined enqueue, ids only in the queue, workers consume them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from dramatiq import Message

from dispatcher.queue.broker import (
    Packed,
    build_broker,
    enqueue_ids,
    enqueue_many,
    uuid4s,
    write_batch,
)
from dispatcher.settings import Settings
from tests.factories import add_member, harness, write_campaign
from tests.servers.smtp_server import SmtpServerHandle


def test_campaign_over_redis_carries_only_delivery_ids_and_sends_each_once(
    make_settings: Callable[..., Settings],
    redis_url: str,
    redis_namespace: str,
    smtp_server: SmtpServerHandle,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        redis_url=redis_url,
        redis_namespace=redis_namespace,  # the guard's counters too
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_security="none",
    )
    broker = build_broker(settings, namespace=redis_namespace)
    with harness(settings, broker) as h:
        for i in range(25):
            add_member(h.engine, f"C{i}", email=f"member{i}@example.com", first_name="علی")
        h.send(write_campaign(tmp_path / "c"))

        client = redis.Redis.from_url(redis_url)
        stored = client.hvals(f"{redis_namespace}:email.msgs")
        assert len(stored) == 25
        ids = {d.id for d in h.deliveries()}
        for raw in stored:
            message = json.loads(raw)
            assert message["args"] in ([i] for i in ids)
            assert message["kwargs"] == {}
            assert b"@" not in raw and "علی".encode() not in raw

        h.run_workers()
        assert sorted(m.rcpt_to for m in smtp_server.wait_for(25)) == sorted(
            f"member{i}@example.com" for i in range(25)
        )
        assert {d.status for d in h.deliveries()} == {"sent"}
        client.close()


def test_enqueue_many_pipelines_in_batches(
    make_settings: Callable[..., Settings], redis_url: str, redis_namespace: str
) -> None:
    settings = make_settings(redis_url=redis_url, redis_namespace=redis_namespace)
    broker = build_broker(settings, namespace=redis_namespace)
    with harness(settings, broker) as h:
        actor = h.actors["email"]
        sent = enqueue_many(broker, (actor.message(i) for i in range(5_000)), batch=1_000)
        client = redis.Redis.from_url(redis_url)
        assert sent == 5_000
        assert client.llen(f"{redis_namespace}:email") == 5_000
        first = json.loads(
            client.hget(
                f"{redis_namespace}:email.msgs", client.lindex(f"{redis_namespace}:email", 0)
            )
        )  # type: ignore[arg-type]
        assert first["args"] == [0]
        client.close()


def test_enqueue_ids_writes_byte_for_byte_what_dramatiq_would(
    make_settings: Callable[..., Settings], redis_url: str, redis_namespace: str
) -> None:
    settings = make_settings(redis_url=redis_url, redis_namespace=redis_namespace)
    broker = build_broker(settings, namespace=redis_namespace)
    with harness(settings, broker) as h:
        actor = h.actors["email"]
        assert enqueue_ids(broker, actor, [7, 8, 9], batch=2) == 3
        client = redis.Redis.from_url(redis_url)
        queued = client.lrange(f"{redis_namespace}:email", 0, -1)
        assert len(queued) == 3
        for delivery_id, redis_id in zip([7, 8, 9], queued, strict=True):
            raw = client.hget(f"{redis_namespace}:email.msgs", redis_id)
            assert isinstance(raw, bytes)
            got = Message.decode(raw)
            assert got.options == {"redis_message_id": redis_id.decode()}
            assert uuid.UUID(got.message_id).version == 4
            assert uuid.UUID(redis_id.decode()).version == 4
            same = dataclasses.replace(
                actor.message(delivery_id).copy(options=got.options),
                message_id=got.message_id,
                message_timestamp=got.message_timestamp,
            )
            assert same.encode() == raw
        client.close()


@pytest.mark.parametrize("refused", [2, 4], ids=["a middle batch", "the last batch"])
def test_enqueue_ids_stops_at_the_first_batch_redis_refuses(
    make_settings: Callable[..., Settings],
    redis_url: str,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    refused: int,
) -> None:
    settings = make_settings(redis_url=redis_url, redis_namespace=redis_namespace)
    broker = build_broker(settings, namespace=redis_namespace)
    written: list[int] = []

    def refuses(client: redis.Redis, packed: Packed) -> None:
        if len(written) == refused - 1:
            raise redis.ConnectionError("gone")
        write_batch(client, packed)
        written.append(packed.messages)

    with harness(settings, broker) as h:
        with pytest.raises(redis.ConnectionError):  # 10 ids, batches of 3: 3, 3, 3, 1
            enqueue_ids(broker, h.actors["email"], range(1, 11), batch=3, write=refuses)
        client = redis.Redis.from_url(redis_url)
        assert written == [3] * (refused - 1)  # none after the refused one
        assert client.llen(f"{redis_namespace}:email") == 3 * (refused - 1)
        assert all(
            uuid.UUID(k.decode()).version == 4
            for k in client.hkeys(f"{redis_namespace}:email.msgs")
        )
        client.close()


def test_uuid4s_are_what_str_uuid4_writes_and_all_different() -> None:
    text = uuid4s(5_000)
    values = [text[36 * k : 36 * k + 36] for k in range(5_000)]
    assert len(text) == 36 * 5_000 and len(set(values)) == 5_000
    for value in values:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == value


def test_enqueue_ids_raises_what_redis_refuses(
    make_settings: Callable[..., Settings], redis_url: str, redis_namespace: str
) -> None:
    settings = make_settings(redis_url=redis_url, redis_namespace=redis_namespace)
    broker = build_broker(settings, namespace=redis_namespace)
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_namespace}:email.msgs", "not a hash")  # HSET: WRONGTYPE
    with harness(settings, broker) as h:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            enqueue_ids(broker, h.actors["email"], [1, 2, 3])
        client.delete(f"{redis_namespace}:email.msgs", f"{redis_namespace}:email")
        assert enqueue_ids(broker, h.actors["email"], [4, 5]) == 2  # the connection is sound
    assert client.llen(f"{redis_namespace}:email") == 2
    client.close()
