"""The `dispatcher` command: thin; parses, calls the modules, prints with Rich."""

from __future__ import annotations

from dispatcher.cli import (  # registers the commands
    abtest,
    apikeys,
    bounces,
    campaign,
    drafts,
    members,
    ops,
    report,
    schedule,
    sms,
    staff,
    testsend,
    validate,
)
from dispatcher.cli.app import app, err
from dispatcher.errors import DispatcherError

__all__ = [
    "abtest",
    "apikeys",
    "app",
    "bounces",
    "campaign",
    "drafts",
    "members",
    "ops",
    "report",
    "run",
    "schedule",
    "sms",
    "staff",
    "testsend",
    "validate",
]


def run(args: list[str] | None = None) -> None:
    """The console script (`args`: default the command line). A database that cannot be
    opened or answered is one clear line naming the (password-free) URL, not a traceback."""
    try:
        app(args=args, prog_name="dispatcher")
    except Exception as exc:
        # SQLAlchemy is imported here, not before: `dispatcher --help` never loads it.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        from dispatcher.settings import get_settings

        if not isinstance(exc, SQLAlchemyError):
            raise
        try:
            url = make_url(get_settings().database_url).render_as_string(hide_password=True)
        except (DispatcherError, SQLAlchemyError, ValueError):
            url = "DATABASE_URL"
        reason = getattr(exc, "orig", None) or (exc.args[0] if exc.args else type(exc).__name__)
        err.print(f"[bold red]error:[/] database {url}: {reason}", highlight=False)
        raise SystemExit(1) from None
