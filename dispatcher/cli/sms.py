"""`dispatcher sms sync | inbox | release`: SMS after sending, by hand."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.runtime import Runtime

from dispatcher.cli.app import fail, out, queue, runtime, sms_app


def _sms_runtime() -> Runtime:
    rt: Runtime = runtime()
    if rt.settings.sms_outbox:
        fail("KAVENEGAR_API_KEY is not set: SMS go to the outbox; there is nothing to ask")
    return rt


@sms_app.command("sync")
def sms_sync() -> None:
    """Record Kavenegar's delivery reports of recent SMS (14 = blocked: opt the member out)."""
    from dispatcher.feedback.reports import sync_statuses

    _ask_kavenegar("sms sync", sync_statuses)


@sms_app.command("inbox")
def sms_inbox() -> None:
    """Read replies to the sender line; opt out of SMS whoever answered an opt-out word."""
    from dispatcher.feedback.replies import read_inbox

    _ask_kavenegar("sms inbox", read_inbox)


def _ask_kavenegar(name: str, job: Callable[[Runtime], dict[str, int]]) -> None:
    """Run one of the SMS housekeeping jobs by hand and print its counts."""
    rt = _sms_runtime()
    try:
        counts = job(rt)
    except DispatcherError as exc:
        fail(str(exc))
    finally:
        rt.close()
    out.print(f"{name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)


@sms_app.command("release")
def sms_release() -> None:
    """Enqueue the SMS that waited for the send window, once it is open (inline: send)."""
    from dispatcher.delivery.control import finish_if_done
    from dispatcher.feedback.release import release_waiting_sms
    from dispatcher.inline import run_inline
    from dispatcher.sms.window import describe, window_closed_until

    rt = runtime()
    broker, actors = queue(rt)
    s = rt.settings
    opening = window_closed_until(s, rt.clock())
    if opening is not None:
        out.print(f"the SMS send window is closed; it opens at {describe(opening, s.sms_zone)}")
        return
    released = release_waiting_sms(rt.engine, s, broker, actors["sms"], now=rt.clock())
    out.print(f"sms release: {sum(released.values())} SMS enqueued", highlight=False)
    if s.inline:
        for campaign_id in released:
            run_inline(broker, rt.engine, campaign_id, threads=s.worker_threads)
            finish_if_done(rt.engine, campaign_id)
