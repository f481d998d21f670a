"""`campaign validate`: the file, its templates rendered for many members, the audience
per channel and the send time; changes nothing. Registered on `campaign_app`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dispatcher.cli.app import campaign_app, err, out, settings
from dispatcher.cli.campaign import load_or_exit
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dispatcher.definition.campaign import CampaignSpec
    from dispatcher.definition.rendering import CampaignTemplates
    from dispatcher.settings import Settings


@campaign_app.command("validate")
def campaign_validate(
    file: Path,
    all_members: Annotated[
        bool, typer.Option("--all", help="Render for every member, not a varied sample.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="The audience counts as one JSON object.")
    ] = False,
) -> None:
    """Check a campaign file; render it for a varied sample of the audience (or --all);
    print the audience per channel and the send time. Changes nothing."""
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.definition.campaign import SAMPLE_MEMBER, SAMPLE_UNSUBSCRIBE_URL
    from dispatcher.definition.check import EDGE_MEMBERS, render_problems
    from dispatcher.definition.rendering import shop_name
    from dispatcher.plan import audience_counts_of

    spec = load_or_exit(file)
    s = settings()
    if as_json:
        _print_json(file, spec, s)
        return
    out.print(f"[green]ok[/] {file}: {spec.slug} ({', '.join(spec.channels)})", highlight=False)
    failed = not _send_at_ok(spec, s)
    templates = spec.templates({"name": shop_name(s.mail_from)}, zone=s.sms_zone)
    engine, why = _existing_database(s)
    counts: dict[str, Any] | str = why
    try:
        members: list[dict[str, Any]] = [dict(SAMPLE_MEMBER), *EDGE_MEMBERS]
        if engine is not None:
            counts = audience_counts_of(engine, spec)
        rendered, problems = render_problems(
            spec,
            templates,
            _contexts(members, engine, spec, everyone=all_members),
            url=SAMPLE_UNSUBSCRIBE_URL,
        )
    except SQLAlchemyError as exc:
        err.print(f"[red]database:[/] {type(exc).__name__}", highlight=False)
        raise typer.Exit(1) from None
    except DispatcherError as exc:
        err.print(f"[red]audience:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        if engine is not None:
            engine.dispose()
    kind = "every member" if all_members else "a varied sample"
    out.print(f"rendered for {rendered} members ({kind}, with edge cases)", highlight=False)
    for problem in problems:
        err.print(f"  [{'yellow' if problem.warning else 'red'}]-[/] {problem}", highlight=False)
    if isinstance(counts, dict):
        per = ", ".join(f"{channel} {row['deliveries']:,}" for channel, row in counts.items())
        out.print(f"audience now: {per} members (consent as it stands)", highlight=False)
        for channel, row in counts.items():
            out.print(f"{channel}: {_narrowed(spec, row)}", highlight=False)
            reasons = ", ".join(f"{k} {v}" for k, v in row["excluded_by"].items())
            out.print(f"{channel}: excluded: {reasons}", highlight=False)
    else:
        out.print(f"audience unknown ({counts})", highlight=False)
    if spec.sms:
        _print_sms_length(spec, templates, s)
    if failed or any(not problem.warning for problem in problems):
        raise typer.Exit(1)


def _narrowed(spec: CampaignSpec, row: dict[str, Any]) -> str:
    """`tags select 600 members; all_tags removed 450, ...` (the rules the file sets)."""
    audience = spec.audience
    selected = "tags select" if audience.tags else "all members:"
    rules = [name for name in row["removed_by"] if getattr(audience, name)]
    removed = "; " + ", ".join(f"{name} removed {row['removed_by'][name]:,}" for name in rules)
    return f"{selected} {row['tagged']:,} members" + (removed if rules else "")


def _print_json(file: Path, spec: CampaignSpec, s: Settings) -> None:
    from dispatcher.definition.rendering import shop_name
    from dispatcher.plan import audience_counts_of

    found: dict[str, Any] = {"file": str(file), "slug": spec.slug, "channels": spec.channels}
    engine, why = _existing_database(s)
    if engine is None:
        found["audience"] = f"unknown ({why})"
    else:
        try:
            found.update(audience_counts_of(engine, spec))
            if spec.sms:
                templates = spec.templates({"name": shop_name(s.mail_from)}, zone=s.sms_zone)
                try:
                    found["sms"].update(
                        sms_cost_of(engine, spec, templates, s, track=_sample_click_links(spec, s))
                    )
                except DispatcherError as exc:  # a template failing for a member
                    found["sms"]["sms_cost_unknown"] = str(exc)
        finally:
            engine.dispose()
    print(json.dumps(found, ensure_ascii=False))


def sms_cost_of(
    engine: Engine,
    spec: CampaignSpec,
    templates: CampaignTemplates,
    s: Settings,
    *,
    track: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """`{members, parts, rials_per_part, cost_estimate_rials}` of the SMS to the audience
    now: its parts, priced at what Kavenegar charged for the last SMS (None: unknown)."""
    from dispatcher.plan import audience_parts
    from dispatcher.sms.cost import part_price

    total = audience_parts(
        engine, templates, footer=s.sms_optout_footer, audience=spec.audience, track=track
    )
    price = part_price(engine)
    return {
        "members": total.members,
        "parts": total.parts,
        "rials_per_part": round(price.rials_per_part, 1) if price else None,
        "cost_estimate_rials": price.estimate(total.parts) if price else None,
    }


def _send_at_ok(spec: CampaignSpec, s: Settings) -> bool:
    from dispatcher.definition.sendtime import describe, parse_send_at
    from dispatcher.store.models import utcnow

    if not spec.send_at:
        return True
    when = parse_send_at(spec.send_at, s.sms_zone)  # its form was checked by _load
    if when <= utcnow():
        err.print(
            f"  [red]-[/] {spec.source}: send_at: {describe(when, s.sms_zone)} has passed: "
            "`send` refuses it (change it, or `send --now`)",
            highlight=False,
        )
        return False
    out.print(f"send_at: {describe(when, s.sms_zone)}", highlight=False)
    return True


def _contexts(
    first: list[dict[str, Any]], engine: Engine | None, spec: CampaignSpec, *, everyone: bool
) -> Iterator[dict[str, Any]]:
    yield from first
    if engine is None:
        return
    from dispatcher.queue import sample

    chosen = sample.everyone(engine, spec) if everyone else sample.varied_sample(engine, spec)
    for member in chosen:
        yield member.template_context()


def _existing_database(s: Settings) -> tuple[Engine | None, str]:
    """An engine on the database if it exists and has members; else None and why.

    Changes nothing: a SQLite file that does not exist is not created."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from dispatcher.store.db import make_engine

    url = make_url(s.database_url)
    if url.get_backend_name() == "sqlite" and not (
        url.database and url.database != ":memory:" and Path(url.database).exists()
    ):
        return None, "no database yet"
    engine = make_engine(s.database_url)
    try:
        if inspect(engine).has_table("member"):
            return engine, ""
        why = "no members imported yet"
    except SQLAlchemyError as exc:
        why = f"database: {type(exc).__name__}"
    engine.dispose()
    return None, why


def _sample_click_links(spec: CampaignSpec, s: Settings) -> Callable[[str], str] | None:
    """With `[sms] track_links`: an SMS's links as click links of the real length."""
    from dispatcher.audience.clicktoken import SMS_TOKEN_CHARS
    from dispatcher.definition.links import rewrite_text

    if not spec.sms_track_links:
        return None
    url = f"{s.unsubscribe_base_url}/c/{'x' * SMS_TOKEN_CHARS}"
    return lambda body: rewrite_text(body, spec.link_index(), lambda _: url)


def _print_sms_length(spec: CampaignSpec, templates: CampaignTemplates, s: Settings) -> None:
    """The SMS for a sample member: characters and parts; and for the audience, the total."""
    from dispatcher.definition.campaign import SAMPLE_MEMBER
    from dispatcher.sms.text import measure, with_footer

    track = _sample_click_links(spec, s)
    body = templates.render_sms(dict(SAMPLE_MEMBER))
    text = with_footer(track(body) if track else body, s.sms_optout_footer)
    tracked = ", links as click links" if track else ""
    out.print(
        f"sms: {measure(text)} for a sample member, footer included{tracked}", highlight=False
    )
    engine, why = _existing_database(s)
    if engine is None:
        out.print(f"sms audience: audience unknown ({why})", highlight=False)
        return
    try:
        cost = sms_cost_of(engine, spec, templates, s, track=track)
    except DispatcherError as exc:
        out.print(f"sms audience: audience unknown ({exc})", highlight=False)
        return
    finally:
        engine.dispose()
    out.print(
        f"sms audience: {cost['members']} members, {cost['parts']} SMS parts in all",
        highlight=False,
    )
    if cost["cost_estimate_rials"] is None:
        out.print(
            "sms cost: unknown until Kavenegar has priced an SMS (the outbox prices none)",
            highlight=False,
        )
    else:
        out.print(
            f"sms cost: about {cost['cost_estimate_rials']:,} rials "
            f"({cost['rials_per_part']:,} rials a part, as Kavenegar charged for the last SMS)",
            highlight=False,
        )
