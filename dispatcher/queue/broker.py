"""The one place the Dramatiq broker is built (Redis, RabbitMQ, or in-process for
inline mode), and batched enqueueing: a large audience must not pay a round trip per
message (Redis: pipelined; RabbitMQ: publisher confirms in a window, `queue/rabbitmq.py`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

import dramatiq
import redis
from dramatiq import Actor, Broker, Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware

from dispatcher.errors import ConfigurationError
from dispatcher.queue.banner import StartBanner
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from dispatcher.queue.rabbitmq import ConfirmedPublisher

log = logging.getLogger("dispatcher.broker")

NAMESPACE = "dispatcher"  # the default of REDIS_NAMESPACE
# Redis broker tuning: a killed worker's messages are requeued by whichever worker
# next runs maintenance after the heartbeat times out (REDIS_HEARTBEAT_TIMEOUT_MS,
# default 30 s). Dramatiq's defaults (1 in 1000 commands does maintenance, 60 s
# heartbeat) can strand them for a long time on a quiet queue; 1 in 20 keeps it to
# about a minute at no measurable cost (an idle worker polls each queue every second).
MAINTENANCE_CHANCE = 50_000  # out of dramatiq's scale of 1,000,000
# KEYS: the worker's ack set of the queue, the queue's message hash. ARGV: message ids.
# Dramatiq's own "ack" (dispatch.lua), for many messages in one call.
_ACK_MANY = """
for i = 1, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
return #ARGV
"""

_actors: list[Actor] = []


def build_broker(settings: Settings, *, namespace: str | None = None) -> Broker:
    """The broker the settings name (`settings.broker`): RabbitmqBroker for an amqp://
    BROKER_URL, RedisBroker for a redis:// one or REDIS_URL, StubBroker (inline mode)
    otherwise.

    Redis keys live under `namespace`, else REDIS_NAMESPACE (default "dispatcher");
    on RabbitMQ the virtual host in the URL keeps deployments apart.
    """
    broker: Broker
    if settings.broker == "rabbitmq":
        # Confirms: an enqueue that returned is on the broker, and a queue that vanished
        # (a restarted RabbitMQ) is declared again on the next enqueue.
        from dramatiq.brokers.rabbitmq import RabbitmqBroker  # pika: only when used

        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    elif settings.broker == "redis":
        assert settings.redis_broker_url is not None
        broker = BatchAckRedisBroker(
            url=settings.redis_broker_url,
            namespace=namespace or settings.redis_namespace,
            heartbeat_timeout=settings.redis_heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    if settings.broker != "inline":  # worker processes: say what they send through
        broker.add_middleware(StartBanner(settings))
    if settings.prometheus and not settings.inline:
        # Opt-in (PROMETHEUS=1): counters and histograms per actor, served by a
        # process Dramatiq forks (port: Dramatiq's own `dramatiq_prom_port`, 9191).
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "PROMETHEUS=1 needs prometheus_client: pip install 'campaign-dispatcher[metrics]'"
            ) from None
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    log.info("broker: %s", settings.broker_label, extra={"outcome": "broker"})
    return broker


class BatchAckRedisBroker(RedisBroker):
    """Dramatiq's Redis broker, with acknowledgements sent in batches.

    Dramatiq acknowledges each message with a script call from the worker thread that
    ran it: a Redis round trip per message, and a wake-up of that thread, most of the
    per-message cost of the consumer. Here a worker thread only notes the message as
    done, and the queue's consumer thread acknowledges everything noted since its last
    fetch in one call, just before it fetches again (at least once a second when idle,
    and when the worker stops). An acknowledgement can only come later than
    Dramatiq's, never earlier: a job still returns first, after its delivery is
    recorded, and a message whose acknowledgement a crash lost is delivered again and
    finds its delivery no longer pending.
    """

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _BatchAckConsumer


class _BatchAckConsumer(_RedisConsumer):
    def __init__(self, broker: RedisBroker, *args: Any) -> None:
        super().__init__(broker, *args)
        self._done: list[MessageProxy] = []
        self._done_lock = threading.Lock()
        self._ack_many = broker.client.register_script(_ACK_MANY)
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        self._keys = [acks, f"{broker.namespace}:{self.queue_name}.msgs"]

    def ack(self, message: MessageProxy) -> None:
        with self._done_lock:
            self._done.append(message)

    def __next__(self) -> MessageProxy | None:
        if not self.message_cache:  # about to fetch (or to sleep): acknowledge first
            self.flush_acks()
        result: MessageProxy | None = super().__next__()
        return result

    def flush_acks(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        if not done:
            return
        try:
            self._ack_many(keys=self._keys, args=[m.options["redis_message_id"] for m in done])
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None
        finally:
            for message in done:
                self.queued_message_ids.discard(message.message_id)

    def close(self) -> None:
        try:
            self.flush_acks()
        finally:
            super().close()


def register(actor: Actor) -> Actor:
    """Remember one of our actors so `use_broker` can move it to another broker."""
    _actors.append(actor)
    return actor


def use_broker(broker: Broker) -> Broker:
    """Make `broker` the global broker and declare every registered actor on it."""
    dramatiq.set_broker(broker)
    for actor in _actors:
        actor.broker = broker
        broker.declare_actor(actor)
    return broker


def is_rabbitmq(broker: Broker) -> TypeGuard[RabbitmqBroker]:
    """Whether `broker` is Dramatiq's RabbitmqBroker, without importing pika for a
    process that never made one (the module is loaded once a RabbitmqBroker exists)."""
    module = sys.modules.get("dramatiq.brokers.rabbitmq")
    return module is not None and isinstance(broker, module.RabbitmqBroker)


def enqueue_many(broker: Broker, messages: Iterable[Message], *, batch: int = 2000) -> int:
    """Enqueue messages; on Redis, `batch` at a time in one pipelined round trip; on
    RabbitMQ, in a window of unconfirmed messages, returning once all are confirmed."""
    if is_rabbitmq(broker):
        return _publish_many(broker, messages)
    if not isinstance(broker, RedisBroker):
        n = 0
        for message in messages:
            broker.enqueue(message)
            n += 1
        return n
    dispatch = broker.scripts["dispatch"]
    keys = [broker.namespace]
    total = 0
    pending: list[Message] = []

    def flush() -> None:
        pipe = broker.client.pipeline(transaction=False)
        now = current_millis()
        for message in pending:
            broker.emit_before("enqueue", message, None)
            dispatch(
                keys=keys,
                args=[
                    "enqueue",
                    now,
                    message.queue_name,
                    broker.broker_id,
                    broker.heartbeat_timeout,
                    broker.dead_message_ttl,
                    0,  # no maintenance while enqueueing
                    broker._max_unpack_size(),
                    message.options["redis_message_id"],
                    message.encode(),
                ],
                client=pipe,
            )
        pipe.execute()
        for message in pending:
            broker.emit_after("enqueue", message, None)
        pending.clear()

    for message in messages:
        pending.append(message.copy(options={"redis_message_id": str(uuid.uuid4())}))
        if len(pending) >= batch:
            total += len(pending)
            flush()
    if pending:
        total += len(pending)
        flush()
    return total


def enqueue_ids(
    broker: Broker,
    actor: Actor,
    ids: Iterable[int],
    *,
    batch: int = 2000,
    write: Callable[[redis.Redis, Packed], None] | None = None,
) -> int:
    """One message per id for `actor`, as `actor.send(id)` makes it; fast on Redis.

    On Redis with Dramatiq's JSON encoder and no middleware that watches enqueues,
    each batch is written as Dramatiq's own enqueue script leaves it (the encoded
    message in the queue's `.msgs` hash under a fresh `redis_message_id`, that id
    appended to the queue's list) with one HSET and one RPUSH in one MULTI. The JSON
    is put together from a template, byte for byte what `Message.encode` gives, and the
    batch's commands straight into Redis's wire format (`_packed`): a fraction of the
    cost of a Message, two `uuid4` and a script call per id, or of redis-py packing
    4,000 arguments. `write` writes one batch (default: `write_batch`). On RabbitMQ with
    the JSON encoder and no enqueue hooks, the same template makes each body,
    published with confirms (`queue/rabbitmq.py`).
    """
    if is_rabbitmq(broker) and _plain(broker):
        return _publish_ids(broker, actor, ids)
    if not _plain_redis(broker):
        return enqueue_many(broker, (actor.message(i) for i in ids), batch=batch)
    assert isinstance(broker, RedisBroker)
    queue = f"{broker.namespace}:{actor.queue_name}"
    head = (
        f'{{"queue_name":{json.dumps(actor.queue_name)},'
        f'"actor_name":{json.dumps(actor.actor_name)},"args":['
    )
    total = 0
    chunk: list[int] = []
    writer = ThreadPoolExecutor(1, thread_name_prefix="dispatcher-enqueue")
    writing: Future[Any] | None = None  # the previous batch, written while this one is built

    def flush() -> None:
        nonlocal writing
        packed = _packed(queue, head, chunk)
        if writing is not None:
            writing.result()  # in order, and an error stops the next batch
        writing = writer.submit(write or write_batch, broker.client, packed)

    try:
        for delivery_id in ids:
            chunk.append(delivery_id)
            if len(chunk) >= batch:
                flush()
                total += len(chunk)
                chunk.clear()
        if chunk:
            flush()
            total += len(chunk)
        if writing is not None:
            writing.result()
    finally:
        writer.shutdown(wait=True)
    return total


class Packed(NamedTuple):
    """One batch of `enqueue_ids` in Redis's wire format: MULTI, HSET, RPUSH, EXEC."""

    data: bytes
    messages: int  # how many


def _packed(queue: str, head: str, chunk: list[int]) -> Packed:
    """The batch's MULTI / HSET `{queue}.msgs` id body ... / RPUSH `{queue}` id ... /
    EXEC as RESP. The ids and bodies are ASCII (`json.dumps` escapes the rest), so a
    string's length is its length in bytes."""
    n = len(chunk)
    now = current_millis()
    uuids = uuid4s(2 * n)  # a message's redis_message_id, then its message_id
    fields: list[str] = []
    for k, delivery_id in enumerate(chunk):
        at = 72 * k
        redis_id = uuids[at : at + 36]
        body = (
            f'{head}{int(delivery_id)}],"kwargs":{{}},'
            f'"options":{{"redis_message_id":"{redis_id}"}},'
            f'"message_id":"{uuids[at + 36 : at + 72]}","message_timestamp":{now}}}'
        )
        fields.append(f"$36\r\n{redis_id}\r\n${len(body)}\r\n{body}\r\n")
    msgs, ids = _bulk(f"{queue}.msgs"), _bulk(queue)
    data = "".join(
        [
            "*1\r\n$5\r\nMULTI\r\n",
            f"*{2 + 2 * n}\r\n$4\r\nHSET\r\n{msgs}",
            *fields,
            f"*{2 + n}\r\n$5\r\nRPUSH\r\n{ids}",
            *(f"$36\r\n{uuids[72 * k : 72 * k + 36]}\r\n" for k in range(n)),
            "*1\r\n$4\r\nEXEC\r\n",
        ]
    )
    return Packed(data.encode(), n)


def _bulk(text: str) -> str:
    """`text` as a RESP bulk string, its length counted in UTF-8 bytes."""
    return f"${len(text.encode())}\r\n{text}\r\n"


def write_batch(client: redis.Redis, packed: Packed) -> None:
    """One batch as Dramatiq's enqueue script leaves it: HSET and RPUSH in one MULTI,
    sent as `_packed` made it. Raises the first error Redis answers."""
    pool = client.connection_pool
    try:
        conn = pool.get_connection()
    except TypeError:  # redis-py 5 wants a command name (later ones deprecate it)
        conn = pool.get_connection("MULTI")
    try:
        conn.send_packed_command([packed.data])
        replies = [conn.read_response() for _ in range(4)]  # OK, QUEUED, QUEUED, [n, n]
    except BaseException:
        conn.disconnect()  # whatever replies are left unread go with it
        raise
    finally:
        pool.release(conn)
    done = replies[-1]
    for reply in done if isinstance(done, list) else [done]:
        if isinstance(reply, Exception):
            raise reply
    if done is None:
        raise redis.ResponseError("EXEC: the transaction was not run")


def uuid4s(n: int) -> str:
    """`n` random version 4 UUIDs, as `str(uuid.uuid4())` writes them, one after the
    other (36 characters each): 16 random bytes each in hex, the dashes and the fixed
    version and variant digits set by slice for all at once."""
    buf = bytearray(os.urandom(18 * n).hex().encode())
    dashes = b"-" * n
    for at in (8, 13, 18, 23):
        buf[at::36] = dashes
    buf[14::36] = b"4" * n
    buf[19::36] = bytes(buf[19::36]).translate(_VARIANT)
    return buf.decode()


# The variant digit of a version 4 UUID (10xx in binary), from a random hex digit.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")


def _plain_redis(broker: Broker) -> bool:
    """Redis, the default JSON encoder, and no middleware with enqueue hooks."""
    return isinstance(broker, RedisBroker) and _plain(broker)


def _plain(broker: Broker) -> bool:
    """The default JSON encoder, and no middleware with enqueue hooks."""
    if type(dramatiq.get_encoder()) is not JSONEncoder:
        return False
    return all(
        type(m).before_enqueue is Middleware.before_enqueue
        and type(m).after_enqueue is Middleware.after_enqueue
        for m in broker.middleware
    )


# -- RabbitMQ --


def _publisher(broker: RabbitmqBroker, queues: Iterable[str]) -> ConfirmedPublisher:
    parameters = broker.parameters
    if isinstance(parameters, list):  # several URLs: the first
        parameters = parameters[0]
    for queue in queues:
        broker.declare_queue(queue)  # known to the broker (its workers consume it)
    from dispatcher.queue.rabbitmq import ConfirmedPublisher

    return ConfirmedPublisher(parameters, queues)


def _publish_many(broker: RabbitmqBroker, messages: Iterable[Message]) -> int:
    """Dramatiq's messages, with its enqueue hooks, published with confirms."""
    queues: list[str] = []
    buffered: list[Message] = []
    for message in messages:  # the queue names are needed before the first publish
        buffered.append(message)
        if message.queue_name not in queues:
            queues.append(message.queue_name)
    if not buffered:
        return 0

    def bodies() -> Iterator[tuple[str, bytes]]:
        for message in buffered:
            broker.emit_before("enqueue", message, None)
            yield message.queue_name, message.encode()

    n = _publisher(broker, queues).run(bodies())
    for message in buffered:
        broker.emit_after("enqueue", message, None)
    return n


def _publish_ids(broker: RabbitmqBroker, actor: Actor, ids: Iterable[int]) -> int:
    """One message per id for `actor`, each body from the template `enqueue_ids` uses."""
    queue = actor.queue_name
    head = (
        f'{{"queue_name":{json.dumps(queue)},"actor_name":{json.dumps(actor.actor_name)},"args":['
    )

    def bodies() -> Iterator[tuple[str, bytes]]:
        chunk: list[int] = []
        for delivery_id in ids:
            chunk.append(delivery_id)
            if len(chunk) >= 2000:
                yield from _bodies(queue, head, chunk)
                chunk = []
        yield from _bodies(queue, head, chunk)

    return _publisher(broker, [queue]).run(bodies())


def _bodies(queue: str, head: str, chunk: list[int]) -> Iterator[tuple[str, bytes]]:
    now = current_millis()
    uuids = uuid4s(len(chunk))
    for k, delivery_id in enumerate(chunk):
        yield (
            queue,
            (
                f'{head}{int(delivery_id)}],"kwargs":{{}},"options":{{}},'
                f'"message_id":"{uuids[36 * k : 36 * k + 36]}","message_timestamp":{now}}}'
            ).encode(),
        )


def queue_is_empty(broker: Broker, queue: str) -> bool | None:
    """True when the broker holds no message of `queue` or of its delay queue; None
    when it cannot tell. Redis counts messages in flight too; RabbitMQ counts only the
    ready ones (a message a worker holds unacknowledged is not counted)."""
    if isinstance(broker, RedisBroker):
        pipe = broker.client.pipeline(transaction=False)
        for name in (queue, dq_name(queue)):
            pipe.hlen(f"{broker.namespace}:{name}.msgs")
        return not any(pipe.execute())
    if is_rabbitmq(broker):
        import pika.exceptions

        broker.declare_queue(queue)
        try:
            main, delayed, _dead = broker.get_queue_message_counts(queue)
        except (pika.exceptions.AMQPError, ConnectionClosed) as exc:
            log.warning("could not count the messages of queue %s: %s", queue, exc)
            del broker.connection  # a fresh connection next time
            return None
        return main + delayed == 0
    if isinstance(broker, StubBroker):
        return all(
            broker.queues[name].unfinished_tasks == 0
            for name in (queue, dq_name(queue))
            if name in broker.queues
        )
    return None
