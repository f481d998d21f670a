"""The Typer apps, the consoles, and what every command needs (settings, runtime)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dramatiq import Actor, Broker

    from dispatcher.audience.addresses import AddressKeys
    from dispatcher.runtime import Runtime
    from dispatcher.settings import Settings

app = typer.Typer(
    help="Send the shop's newsletter by email and promotions by SMS; honour every opt-out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
members_app = typer.Typer(help="Load members and manage their consent.", no_args_is_help=True)
campaign_app = typer.Typer(
    help="Validate, preview, send and follow campaigns.", no_args_is_help=True
)
app.add_typer(members_app, name="members")
app.add_typer(campaign_app, name="campaign")
sms_app = typer.Typer(
    help="SMS after sending: delivery reports, opt-out replies, the send window.",
    no_args_is_help=True,
)
app.add_typer(sms_app, name="sms")
bounces_app = typer.Typer(
    help="Bounces and complaints: read returned mail, suppress the addresses.",
    no_args_is_help=True,
)
app.add_typer(bounces_app, name="bounces")
api_key_app = typer.Typer(
    help="Keys of the shop's private API (`uvicorn dispatcher.api:app`).", no_args_is_help=True
)
app.add_typer(api_key_app, name="api-key")


class ChannelOption(StrEnum):
    """The `--channel` choices: the store's `Channel`, named without importing the store."""

    EMAIL = "email"
    SMS = "sms"


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    from dispatcher.settings import get_settings

    try:
        return get_settings()
    except DispatcherError as exc:
        fail(str(exc))


def address_keys_of(s: Settings) -> AddressKeys:
    """The address keys (SUPPRESSION_KEY), or a clear error naming the setting."""
    from dispatcher.audience.addresses import address_keys

    try:
        return address_keys(s)
    except DispatcherError as exc:
        fail(str(exc))


def runtime() -> Runtime:
    """Build this process's runtime from the settings, with the schema in place."""
    from dispatcher.runtime import Runtime, set_runtime
    from dispatcher.store.schema import ensure_current

    try:
        rt = Runtime.from_settings(settings())
        # The embedded demo (inline, SQLite) migrates itself; production is told to.
        embedded = rt.settings.inline and rt.engine.dialect.name == "sqlite"
        ensure_current(rt.engine, auto_upgrade=embedded)
    except DispatcherError as exc:
        fail(str(exc))
    set_runtime(rt)
    return rt


def queue(rt: Runtime) -> tuple[Broker, dict[str, Actor]]:
    """The broker for this run's settings, and the actors declared on it."""
    from dispatcher.workers import actors, setup

    return setup(rt.settings), actors()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each delivery.")] = False,
) -> None:
    from dispatcher.logs import configure

    configure(
        level=logging.INFO if verbose else logging.WARNING,
        json_lines=settings().log_format == "json",
    )
