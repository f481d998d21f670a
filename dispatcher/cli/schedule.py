"""`campaign reschedule`: move a scheduled campaign. Registered on `campaign_app`."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.cli.app import campaign_app, fail, out, runtime
from dispatcher.cli.ops import future_time
from dispatcher.errors import DispatcherError


@campaign_app.command("reschedule")
def campaign_reschedule(
    slug: str,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="The new send time: '2026-12-20 10:00' (SMS_TIMEZONE), Jalali "
            "'1405-09-29 10:00', or ISO 8601 with an offset. Must be in the future.",
        ),
    ],
) -> None:
    """Move a scheduled campaign to another time (not yet launched)."""
    from dispatcher.definition.sendtime import describe
    from dispatcher.delivery.control import find, reschedule

    rt = runtime()
    s = rt.settings
    when = future_time(at, s, what="--at")
    try:
        campaign = find(rt.engine, slug)
    except DispatcherError as exc:
        fail(str(exc))
    assert campaign.id is not None
    if not reschedule(rt.engine, campaign.id, send_at=when):
        fail(
            f"{slug} is {campaign.state if campaign.state != 'scheduled' else 'launched'}: "
            "only a scheduled campaign can be moved"
        )
    out.print(f"[green]rescheduled[/] {slug} for {describe(when, s.sms_zone)}", highlight=False)
