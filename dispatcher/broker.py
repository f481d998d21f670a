"""The one place the Dramatiq broker is built (Redis, or in-process for inline mode),
and pipelined enqueueing: a large audience must not pay a Redis round trip per message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import dramatiq
from dramatiq import Actor, Broker, Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis
from dramatiq.middleware import CurrentMessage

from dispatcher.errors import ConfigurationError
from dispatcher.settings import Settings

NAMESPACE = "dispatcher"  # the default of REDIS_NAMESPACE
# Redis broker tuning: a killed worker's messages are requeued by whichever worker
# next runs maintenance after the heartbeat times out (REDIS_HEARTBEAT_TIMEOUT_MS,
# default 30 s). Dramatiq's defaults (1 in 1000 commands does maintenance, 60 s
# heartbeat) can strand them for a long time on a quiet queue; 1 in 20 keeps it to
# about a minute at no measurable cost (an idle worker polls each queue every second).
MAINTENANCE_CHANCE = 50_000  # out of dramatiq's scale of 1,000,000

_actors: list[Actor] = []


def build_broker(settings: Settings, *, namespace: str | None = None) -> Broker:
    """RedisBroker when REDIS_URL is set, StubBroker (inline mode) otherwise.

    Keys live under `namespace`, else REDIS_NAMESPACE (default "dispatcher").
    """
    broker: Broker
    if settings.redis_url:
        broker = RedisBroker(
            url=settings.redis_url,
            namespace=namespace or settings.redis_namespace,
            heartbeat_timeout=settings.redis_heartbeat_timeout_ms,
            maintenance_chance=MAINTENANCE_CHANCE,
        )
    else:
        broker = StubBroker()
    broker.add_middleware(CurrentMessage())
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
    return broker


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


def enqueue_many(broker: Broker, messages: Iterable[Message], *, batch: int = 2000) -> int:
    """Enqueue messages; on Redis, `batch` at a time in one pipelined round trip."""
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
