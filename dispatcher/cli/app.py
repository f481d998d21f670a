"""The Typer apps, the consoles, and what every command needs (settings, runtime)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, cast

import typer

from dispatcher.errors import DispatcherError

if TYPE_CHECKING:
    from dramatiq import Actor, Broker
    from rich.console import Console

    from dispatcher.audience.addresses import AddressKeys
    from dispatcher.runtime import Runtime
    from dispatcher.settings import Settings

# Help in Click's plain layout (rich_markup_mode=None): Typer's Rich layout loads Rich
# and Markdown for every `--help`, which alone made `dispatcher --help` slow.
app = typer.Typer(
    help="Send the shop's newsletter by email and promotions by SMS; honour every opt-out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def group(help: str) -> typer.Typer:
    """A group of commands (`dispatcher GROUP COMMAND`), laid out as the app is."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


members_app = group("Load members and manage their consent.")
campaign_app = group("Validate, preview, send and follow campaigns.")
sms_app = group("SMS after sending: delivery reports, opt-out replies, the send window.")
bounces_app = group("Bounces and complaints: read returned mail, suppress the addresses.")
api_key_app = group("Keys of the shop's private API (`uvicorn dispatcher.api:app`).")
app.add_typer(members_app, name="members")
app.add_typer(campaign_app, name="campaign")
app.add_typer(sms_app, name="sms")
app.add_typer(bounces_app, name="bounces")
app.add_typer(api_key_app, name="api-key")


class ChannelOption(StrEnum):
    """The `--channel` choices: the store's `Channel`, named without importing the store."""

    EMAIL = "email"
    SMS = "sms"


class RoleOption(StrEnum):
    """The `--role` choices: the store's `StaffRole`, named without importing the store."""

    VIEWER = "viewer"
    MARKETER = "marketer"
    ADMIN = "admin"


class _Console:
    """A Rich console made at its first use: `dispatcher --help` never loads Rich."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __enter__(self) -> Console:  # `with console:` (Rich's live displays) skips __getattr__
        return self._made().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._made().__exit__(*exc)


out = cast("Console", _Console())
err = cast("Console", _Console(stderr=True))


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
