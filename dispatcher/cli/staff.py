"""`dispatcher staff add | list | remove | password` (console accounts) and `dispatcher
audit` (the console's audit log). Registered on the Typer app of `dispatcher.cli`."""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated

import typer

from dispatcher.cli.app import RoleOption, app, fail, out, runtime
from dispatcher.errors import DispatcherError

staff_app = typer.Typer(
    help="Accounts of the marketer's console (`uvicorn dispatcher.console:app`).",
    no_args_is_help=True,
)
app.add_typer(staff_app, name="staff")
ACTOR = "cli"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        fail("the two passwords differ; nothing was changed")
    return first


def _audit(action: str, detail: str) -> None:
    from dispatcher.store import audit

    audit.record(runtime().engine, ACTOR, action, detail=detail, address="local")


@staff_app.command("add")
def staff_add(
    name: str,
    role: Annotated[RoleOption, typer.Option("--role", help="admin, marketer or viewer")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account (asks for its password, or reads it with --password-stdin)."""
    from dispatcher.store.models import StaffRole
    from dispatcher.store.staff import add_staff

    rt = runtime()
    try:
        added = add_staff(rt.engine, name, StaffRole(role.value), _password(password_stdin))
    except DispatcherError as exc:
        fail(str(exc))
    _audit("staff-add", f"{added.name} ({added.role})")
    out.print(f"[green]added[/] {added.name} ({added.role})", highlight=False)


@staff_app.command("list")
def staff_list() -> None:
    """Every account, its role, and whether it is locked now."""
    from rich.table import Table

    from dispatcher.store.staff import list_staff

    table = Table(title="staff")
    for column in ("name", "role", "created", "locked until"):
        table.add_column(column)
    for member in list_staff(runtime().engine):
        locked = member.locked_until.isoformat() if member.locked_until else ""
        table.add_row(member.name, str(member.role), member.created_at.isoformat(), locked)
    out.print(table)


@staff_app.command("remove")
def staff_remove(name: str) -> None:
    """Delete an account and end its sessions."""
    from dispatcher.store.staff import remove_staff

    try:
        removed = remove_staff(runtime().engine, name)
    except DispatcherError as exc:
        fail(str(exc))
    _audit("staff-remove", removed.name)
    out.print(f"[red]removed[/] {removed.name}", highlight=False)


@staff_app.command("password")
def staff_password(
    name: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a new password: the lockout is lifted and the account's sessions end."""
    from dispatcher.store.staff import set_password

    try:
        changed = set_password(runtime().engine, name, _password(password_stdin))
    except DispatcherError as exc:
        fail(str(exc))
    _audit("staff-password", changed.name)
    out.print(f"[green]password changed[/] for {changed.name}", highlight=False)


@app.command("audit")
def audit_cmd(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="From this date or time on (ISO 8601 or Jalali 1405-09-20; UTC unless "
            "it has an offset).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """The audit log: every change made in the console and by `staff`, newest first."""
    from dispatcher.cli.members import _since
    from dispatcher.store import audit

    rows = audit.events(runtime().engine, since=_since(since))
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(title="audit")
    for column in ("at", "who", "action", "campaign", "member", "detail", "from"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["at"],
            row["actor"],
            row["action"],
            str(row["campaign_id"] or ""),
            str(row["member_id"] or ""),
            row["detail"],
            row["address"] or "",
        )
    out.print(table)
