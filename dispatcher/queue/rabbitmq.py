"""Enqueueing on RabbitMQ in batches with publisher confirms (pika's public API).

Dramatiq's `RabbitmqBroker.enqueue` waits for the broker's confirm of each message: a
round trip per message. Here one connection keeps up to `window` messages unconfirmed
and returns only when RabbitMQ has confirmed every one of them (acks with
`multiple`), so an enqueue that returned is on the broker, as Dramatiq's is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import ConnectionClosed
from pika.channel import Channel
from pika.spec import Basic

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def queue_arguments(queue: str) -> dict[str, dict[str, object]]:
    """The arguments Dramatiq declares a queue, its delay queue and its dead-letter
    queue with (a declaration with other arguments would be refused)."""
    dead_letter: dict[str, object] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue),
    }
    return {
        queue: dead_letter,
        dq_name(queue): dead_letter,
        xq_name(queue): {"x-message-ttl": DEAD_MESSAGE_TTL},
    }


class ConfirmedPublisher:
    """Publishes `(queue, body)` pairs on one connection; `run` returns the number
    published once RabbitMQ confirmed them all, or raises ConnectionClosed."""

    def __init__(
        self, parameters: pika.connection.Parameters, queues: Iterable[str], *, window: int = 8192
    ) -> None:
        self.parameters = parameters
        self.declarations = {k: v for q in queues for k, v in queue_arguments(q).items()}
        self.window = window
        self._messages: Iterator[tuple[str, bytes]] = iter(())
        self._channel: Channel | None = None
        self._published = 0
        self._open: set[int] = set()  # delivery tags not confirmed yet
        self._low = 1  # every tag below is confirmed
        self._exhausted = False
        self._error: BaseException | None = None

    def run(self, messages: Iterable[tuple[str, bytes]]) -> int:
        self._messages = iter(messages)
        connection = pika.SelectConnection(
            parameters=self.parameters,
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_connection_closed,
        )
        try:
            connection.ioloop.start()
        finally:
            if not connection.is_closed:  # an exception from a callback stopped the loop
                connection.close()
                connection.ioloop.start()
        if self._error is not None:
            if isinstance(self._error, ConnectionClosed):
                raise self._error
            raise ConnectionClosed(self._error) from self._error
        return self._published

    # -- the connection and the channel --

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_open_error(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self._error = error if isinstance(error, Exception) else ConnectionError(str(error))
        connection.ioloop.stop()

    def _on_connection_closed(self, connection: pika.SelectConnection, reason: Exception) -> None:
        if self._error is None and not self._done():
            self._error = reason
        connection.ioloop.stop()

    def _on_channel_open(self, channel: Channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._declare)

    def _on_channel_closed(self, channel: Channel, reason: Exception) -> None:
        if self._error is None and not self._done():
            self._error = reason
        connection = channel.connection
        if connection.is_open:
            connection.close()

    def _declare(self, _frame: object = None) -> None:
        assert self._channel is not None
        if not self.declarations:
            self._publish_more()
            return
        name, arguments = self.declarations.popitem()
        self._channel.queue_declare(name, durable=True, arguments=arguments, callback=self._declare)

    # -- publishing and confirms --

    def _publish_more(self) -> None:
        channel = self._channel
        assert channel is not None
        room = self.window - len(self._open)
        publish = channel.basic_publish
        for queue, body in self._messages:
            publish("", queue, body, PERSISTENT, mandatory=True)
            self._published += 1
            self._open.add(self._published)
            room -= 1
            if room <= 0:
                return
        self._exhausted = True
        self._close_if_done()

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        if isinstance(method, Basic.Nack):
            self._fail(ConnectionClosed(RuntimeError("RabbitMQ refused a message (nack)")))
            return
        tag = method.delivery_tag
        if method.multiple:
            for t in range(self._low, tag + 1):
                self._open.discard(t)
            self._low = max(self._low, tag + 1)
        else:
            self._open.discard(tag)
        if self._exhausted:
            self._close_if_done()
        elif len(self._open) <= self.window // 2:
            self._publish_more()

    def _on_return(
        self, _channel: Channel, method: Basic.Return, _props: object, _body: bytes
    ) -> None:
        self._fail(ConnectionClosed(RuntimeError(f"RabbitMQ had no queue {method.routing_key}")))

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._channel is not None and self._channel.is_open:
            self._channel.connection.close()

    def _done(self) -> bool:
        return self._exhausted and not self._open

    def _close_if_done(self) -> None:
        if self._done() and self._channel is not None and self._channel.connection.is_open:
            self._channel.connection.close()
