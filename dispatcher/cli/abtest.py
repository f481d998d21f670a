"""`campaign ab-pick SLUG VARIANT`: decide an A/B test by hand. Registered on
`campaign_app`."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.cli.app import campaign_app, fail, out, queue, runtime
from dispatcher.errors import DispatcherError


@campaign_app.command("ab-pick")
def campaign_ab_pick(
    slug: str,
    variant: Annotated[str, typer.Argument(help="The winner: A, B, C or D.")],
) -> None:
    """Decide the campaign's A/B test now: VARIANT goes to the rest of the audience.
    Only before the test is decided (by the scheduler, or a pick before)."""
    from dispatcher.delivery.control import find
    from dispatcher.scheduler import Scheduler, Tick
    from dispatcher.store.models import utcnow

    rt = runtime()
    broker, actors = queue(rt)
    try:
        campaign = find(rt.engine, slug)
        assert campaign.id is not None
        decision = Scheduler(rt, broker, actors).decide_ab(
            campaign.id, utcnow(), Tick(), winner=variant.strip().upper()
        )
    except DispatcherError as exc:
        fail(str(exc))
    if decision is None:
        fail(
            f"{slug}: its A/B test was decided already (winner {campaign.ab_winner}, "
            f"{campaign.ab_decided_by})"
            if campaign.ab_winner
            else f"{slug}: no A/B test is waiting for a winner"
        )
    out.print(
        f"[green]A/B winner[/] {slug}: {decision.winner}; "
        f"{len(decision.waiting_ids)} enqueued for the rest of the audience",
        highlight=False,
    )
