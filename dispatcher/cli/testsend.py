"""`campaign test`: real copies to the staff, nothing recorded. Registered on `campaign_app`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dispatcher.cli.app import campaign_app, fail, out, runtime
from dispatcher.cli.campaign import load_or_exit
from dispatcher.errors import DispatcherError


@campaign_app.command("test")
def campaign_test(
    file: Path,
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            help="An email address (gets the email) or a mobile (gets the SMS); repeat it.",
        ),
    ],
    member: Annotated[
        str | None, typer.Option("--member", help="external_id to render for (default: sample)")
    ] = None,
) -> None:
    """Send one real copy to each --to address, subject prefixed [آزمایشی]; record nothing."""
    from sqlmodel import Session, col, select

    from dispatcher.audience.normalise import external_id_forms
    from dispatcher.definition.campaign import SAMPLE_MEMBER
    from dispatcher.store.models import Channel, Member
    from dispatcher.testsend import send_test_copies, targets

    spec = load_or_exit(file)
    try:
        addresses = targets(to)
    except DispatcherError as exc:
        fail(str(exc), code=2)
    rt = runtime()
    s = rt.settings
    if any(c is Channel.EMAIL for c, _ in addresses) and not s.mail_from:
        fail("MAIL_FROM is required to send email, e.g. MAIL_FROM='Shop <news@shop.example>'")
    context = dict(SAMPLE_MEMBER)
    url = f"{s.unsubscribe_base_url}/u/test-copy"  # a test copy's link unsubscribes no one
    if member is not None:
        with Session(rt.engine) as session:
            found = session.exec(
                select(Member).where(col(Member.external_id).in_(external_id_forms(member)))
            ).first()
        if found is None:
            fail(f"no member with external_id {member!r}")
        context = found.template_context()
    out.print(
        f"email transport: [bold]{s.transport_label}[/]   sms transport: "
        f"[bold]{s.sms_transport_label}[/]",
        highlight=False,
    )
    try:
        copies = send_test_copies(rt, spec, addresses, member=context, unsubscribe_url=url)
    finally:
        rt.close()
    for copy in copies:
        colour = {"sent": "green", "held": "yellow"}.get(copy.outcome, "red")
        detail = f": {copy.detail}" if copy.detail else ""
        out.print(
            f"[{colour}]{copy.outcome}[/] {copy.channel} test copy to {copy.address}{detail}",
            highlight=False,
        )
    if any(copy.outcome in ("failed", "none") for copy in copies):
        raise typer.Exit(1)
