"""The marketer's console: a private web app for the shop's staff, in Persian, right to
left, on the same campaigns, members and rules as the command line (never mounted on
the public unsubscribe server). Run as `uvicorn dispatcher.console:app` (Procfile
`console`). Accounts: `dispatcher staff add NAME --role admin|marketer|viewer`.
Pages and forms: docs/console.md.
"""

from typing import Any

# The app
from dispatcher.console.application import Console, create_app

__all__ = ["Console", "app", "create_app"]


def __getattr__(name: str) -> Any:
    """`app`, built from the environment's settings when uvicorn first asks for it (so
    that importing the package has no side effect)."""
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(name)
