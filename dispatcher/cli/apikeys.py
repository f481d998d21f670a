"""The `dispatcher api-key` commands: create, list, revoke. Registered on the Typer app
of `dispatcher.cli` (which imports this module last)."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.cli.app import api_key_app, err, fail, out, runtime
from dispatcher.errors import DispatcherError


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Argument(help="Who uses it, e.g. shop-web.")],
) -> None:
    """Create a key and print it, once: only its hash is stored."""
    from dispatcher.store.apikeys import create_key

    rt = runtime()
    try:
        key = create_key(rt.engine, name)
    except DispatcherError as exc:
        fail(str(exc))
    typer.echo(key)  # alone on stdout, for `KEY=$(dispatcher api-key create shop)`
    err.print(
        f"[green]created[/] API key {name}: keep it now, it cannot be shown again",
        highlight=False,
    )


@api_key_app.command("list")
def api_key_list() -> None:
    """Every key: name, created, revoked."""
    from rich.table import Table

    from dispatcher.store.apikeys import list_keys

    rt = runtime()
    table = Table("name", "created", "revoked")
    for key in list_keys(rt.engine):
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.name, key.created_at.isoformat(timespec="seconds"), revoked)
    out.print(table)


@api_key_app.command("revoke")
def api_key_revoke(name: str) -> None:
    """Revoke a key: it gets 401 from the next request on."""
    from dispatcher.store.apikeys import revoke_key

    rt = runtime()
    try:
        changed = revoke_key(rt.engine, name)
    except DispatcherError as exc:
        fail(str(exc))
    out.print(f"[green]revoked[/] {name}" if changed else f"{name} was revoked already")
