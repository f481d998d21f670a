"""The actors. `dramatiq dispatcher.workers` imports this package to run them.

The broker is built here, from the settings, before any actor is declared.
"""

from dispatcher.logs import install_on_root
from dispatcher.queue.broker import build_broker, use_broker
from dispatcher.settings import get_settings

broker = use_broker(build_broker(get_settings()))
# Dramatiq set up logging before importing us: mask addresses (and JSON if asked).
install_on_root(json_lines=get_settings().log_format == "json")

from dispatcher.workers.email import send_email  # noqa: E402
from dispatcher.workers.sms import send_sms  # noqa: E402

ACTORS = {"email": send_email, "sms": send_sms}

__all__ = ["ACTORS", "broker", "send_email", "send_sms"]
