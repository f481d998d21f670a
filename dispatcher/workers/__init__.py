"""The actors. `dramatiq dispatcher.workers` imports this package to run them.

The broker is built here, from the settings, before any actor is declared.
"""

from dispatcher.broker import build_broker, use_broker
from dispatcher.settings import get_settings

broker = use_broker(build_broker(get_settings()))

from dispatcher.workers.email import send_email  # noqa: E402

ACTORS = {"email": send_email}

__all__ = ["ACTORS", "broker", "send_email"]
