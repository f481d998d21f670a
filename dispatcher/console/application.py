"""The Starlette app of the marketer's console: what the pages share, the routes;
built by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from dramatiq import Actor, Broker
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatcher.audience.addresses import AddressKeys, address_keys
from dispatcher.console import admin, auth, campaigns, drafts, members
from dispatcher.console.view import HEADERS, View
from dispatcher.settings import Settings, get_settings
from dispatcher.store.db import make_engine
from dispatcher.store.schema import ensure_current

_STATIC = {
    "console.css": ("console/static/console.css", "text/css; charset=utf-8"),
    "console.js": ("console/static/console.js", "text/javascript; charset=utf-8"),
    "chart.umd.min.js": ("templates/report/chart.umd.min.js", "text/javascript; charset=utf-8"),
}


@dataclass
class Console:
    """What the pages share, built once at start-up from the settings."""

    settings: Settings
    engine: Engine
    keys: AddressKeys
    view: View
    static: dict[str, tuple[bytes, str]]
    _queue: tuple[Broker, dict[str, Actor]] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Console:
        engine = make_engine(settings.database_url)
        embedded = settings.inline and engine.dialect.name == "sqlite"
        ensure_current(engine, auto_upgrade=embedded)
        root = files("dispatcher")
        static = {
            name: ((root / path).read_bytes(), kind) for name, (path, kind) in _STATIC.items()
        }
        return cls(settings, engine, address_keys(settings), View(settings.sms_zone), static)

    def queue(self) -> tuple[Broker, dict[str, Actor]]:
        """The broker and the actors, as the workers have them (loaded when first
        needed: only sending, resuming and retrying enqueue)."""
        from dispatcher.workers import actors, setup

        if self._queue is None:
            self._queue = (setup(self.settings), actors())
        return self._queue


async def static(request: Request) -> Response:
    console: Console = request.app.state.console
    found = console.static.get(request.path_params["name"])
    if found is None:
        return PlainTextResponse("not found", 404)
    body, kind = found
    return Response(body, media_type=kind, headers={"Cache-Control": "max-age=3600"})


async def healthz(request: Request) -> Response:
    console: Console = request.app.state.console
    try:
        await run_in_threadpool(_ping, console.engine)
    except SQLAlchemyError:
        return PlainTextResponse("database unavailable", 503)
    return PlainTextResponse("ok")


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


async def home(request: Request) -> Response:
    return RedirectResponse("/campaigns", 303, headers=HEADERS)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/static/{name}", static),
        Route("/login", auth.login_form, methods=["GET"]),
        Route("/login", auth.login, methods=["POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
        Route("/campaigns", campaigns.listing, methods=["GET"]),
        Route("/campaigns", drafts.create, methods=["POST"]),
        Route("/campaigns/new", drafts.new, methods=["GET"]),
        Route("/campaigns/import", drafts.upload, methods=["POST"]),
        Route("/campaigns/{slug}", campaigns.detail, methods=["GET"]),
        Route("/campaigns/{slug}/progress", campaigns.progress, methods=["GET"]),
        Route("/campaigns/{slug}/report.csv", campaigns.report_csv, methods=["GET"]),
        Route("/campaigns/{slug}/pause", campaigns.pause, methods=["POST"]),
        Route("/campaigns/{slug}/resume", campaigns.resume, methods=["POST"]),
        Route("/campaigns/{slug}/cancel", campaigns.cancel, methods=["POST"]),
        Route("/campaigns/{slug}/retry-failed", campaigns.retry_failed, methods=["POST"]),
        Route("/campaigns/{slug}/edit", drafts.edit, methods=["GET"]),
        Route("/campaigns/{slug}/edit", drafts.save, methods=["POST"]),
        Route("/campaigns/{slug}/preview", drafts.preview, methods=["GET"]),
        Route("/campaigns/{slug}/test", drafts.test_send, methods=["POST"]),
        Route("/campaigns/{slug}/schedule", drafts.schedule, methods=["POST"]),
        Route("/campaigns/{slug}/reschedule", drafts.reschedule, methods=["POST"]),
        Route("/members", members.search, methods=["GET"]),
        Route("/members/import", members.upload, methods=["POST"]),
        Route("/members/{external_id}", members.profile, methods=["GET"]),
        Route("/members/{external_id}/consent", members.consent, methods=["POST"]),
        Route("/members/{external_id}/export", members.export, methods=["GET"]),
        Route("/members/{external_id}/erase", members.erase, methods=["POST"]),
        Route("/suppressions", admin.suppressions, methods=["GET"]),
        Route("/suppressions/lift", admin.lift, methods=["POST"]),
        Route("/audit", admin.audit_log, methods=["GET"]),
    ]


def create_app(settings: Settings | None = None, **_: Any) -> Starlette:
    """The console on the database of `settings` (default: the environment's)."""
    app = Starlette(routes=routes())
    app.state.console = Console.from_settings(settings or get_settings())
    return app
