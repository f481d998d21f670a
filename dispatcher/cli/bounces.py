"""The `dispatcher bounces` commands: import returned mail from files, fetch it over IMAP.
Registered on the Typer app of `dispatcher.cli` (which imports this module last)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dispatcher.cli.app import address_keys_of, bounces_app, fail, out, runtime
from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dispatcher.feedback.returns import Counts, ReturnsReader


def _reader() -> ReturnsReader:
    from dispatcher.feedback.returns import ReturnsReader

    rt = runtime()
    s = rt.settings
    keys = address_keys_of(s)
    return ReturnsReader(rt.engine, key=keys.key, bounce_address=s.bounce_address)


def _print(counts: Counts, as_json: bool, label: str) -> None:
    if as_json:
        print(json.dumps(counts.as_dict()))
    else:
        out.print(f"{label}: {counts}", highlight=False)


@bounces_app.command("import")
def bounces_import(
    path: Annotated[
        Path, typer.Argument(help="A Maildir folder, an mbox file or a folder of .eml")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON object.")] = False,
) -> None:
    """Read delivery status notifications and complaints from files; suppress as need be."""
    from dispatcher.feedback.returns import import_returns

    reader = _reader()
    try:
        counts = import_returns(reader, path)
    except DispatcherError as exc:
        fail(str(exc))
    _print(counts, as_json, f"bounces import {path}")


@bounces_app.command("fetch")
def bounces_fetch(
    as_json: Annotated[bool, typer.Option("--json", help="The counts as one JSON object.")] = False,
) -> None:
    """Read the bounce mailbox (BOUNCE_IMAP_URL), marking what was handled."""
    from dispatcher.feedback.imap import fetch_returns

    reader = _reader()
    url = runtime().settings.bounce_imap_url
    if url is None:
        fail("BOUNCE_IMAP_URL is not set (imaps://user:password@host/INBOX)")
    try:
        counts = fetch_returns(reader, url.get_secret_value())
    except DispatcherError as exc:
        fail(str(exc))
    _print(counts, as_json, "bounces fetch")
