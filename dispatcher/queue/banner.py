"""What a worker process says once it has booted: its broker and transports, the line
every command prints at start (`dramatiq dispatcher.workers` runs no command of ours)."""

from __future__ import annotations

import logging

from dramatiq import Broker, Middleware, Worker

from dispatcher.settings import Settings

log = logging.getLogger("dispatcher.workers")


class StartBanner(Middleware):
    """Logs `worker: broker ..., email transport ..., sms transport ...` after boot."""

    def __init__(self, settings: Settings) -> None:
        self.line = (
            f"worker: broker {settings.broker_label}, email transport "
            f"{settings.transport_label}, sms transport {settings.sms_transport_label}"
        )

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        log.info("%s", self.line)
