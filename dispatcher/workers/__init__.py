"""The actors. `dramatiq dispatcher.workers:setup` runs them (Procfile: worker).

Importing this package builds nothing: `setup()` is the broker factory. It builds the
broker from the settings, makes it Dramatiq's global broker and declares the actors on
it; the `dispatcher` commands call it with their settings, and Dramatiq's command line
calls it (`module:function`) before it starts the workers. The older form,
`dramatiq dispatcher.workers`, still works: in that process alone, importing the
package calls `setup()` (`_started_by_dramatiq`), so an old deployment's workers never sit idle.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from dispatcher.queue.broker import build_broker, use_broker

if TYPE_CHECKING:
    from dramatiq import Actor, Broker

    from dispatcher.settings import Settings

__all__ = ["actors", "setup"]


def setup(settings: Settings | None = None) -> Broker:
    """The broker for `settings` (default: the process's), with every actor on it."""
    from dispatcher.logs import install_on_root
    from dispatcher.settings import get_settings

    s = settings or get_settings()
    broker = use_broker(build_broker(s))
    actors()  # declared on the new broker at first import, moved to it afterwards
    if settings is None:
        # Under Dramatiq's command line, which set up logging before calling us: mask
        # addresses (and JSON if asked).
        install_on_root(json_lines=s.log_format == "json")
    return broker


def actors() -> dict[str, Actor]:
    """The actors by channel name (importing them declares them on the global broker)."""
    from dispatcher.workers.email import send_email
    from dispatcher.workers.sms import send_sms

    return {"email": send_email, "sms": send_sms}


def _started_by_dramatiq(argv: list[str]) -> bool:
    """Whether this process is Dramatiq's command line asked for `dispatcher.workers`
    without `:setup` (its worker processes get the same argv)."""
    program = argv[0].replace("\\", "/") if argv else ""
    started = program.endswith("/dramatiq") or program == "dramatiq" or "dramatiq/" in program
    return started and "dispatcher.workers" in argv[1:]


if _started_by_dramatiq(sys.argv):
    setup()
