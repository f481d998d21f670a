"""The Starlette app: routes, endpoints, error pages; built by `create_app`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from dispatcher.audience.clicktoken import ClickSigner, dedupe_key
from dispatcher.audience.tokens import TokenSigner
from dispatcher.definition.rendering import shop_name
from dispatcher.errors import ConfigurationError, NotFoundError, TokenError
from dispatcher.settings import Settings, get_settings
from dispatcher.store.db import make_engine
from dispatcher.store.models import ConsentSource, utcnow
from dispatcher.web import accesslog
from dispatcher.web.clicks import Clicks
from dispatcher.web.journal import Journal
from dispatcher.web.limits import MAX_BODY, SECURITY_HEADERS, Guard
from dispatcher.web.optout import ConsentWriter, WriteLock, ping
from dispatcher.web.pages import Pages
from dispatcher.web.view import Copies

log = logging.getLogger("dispatcher.web")
T = TypeVar("T")

READ_THREADS = 8  # per process: pages and /healthz
WRITE_THREADS = 8  # per process, for a server database; SQLite writes one at a time
_ONE_CLICK = ("list-unsubscribe", "one-click")
MAX_FIELDS = 16  # form fields read to find the one-click one
NO_STORE = {"Cache-Control": "no-store"}  # every click reaches the server


@dataclass(frozen=True)
class Web:
    """What the endpoints share, built once at start-up from the settings.

    No database call runs on the event loop: reads go to one pool of threads and
    writes to another, so that writes waiting for a lock never hold a page or
    /healthz back."""

    engine: Engine
    signer: TokenSigner
    pages: Pages
    writer: ConsentWriter
    reads: ThreadPoolExecutor
    writes: ThreadPoolExecutor
    retry_interval: float
    copies: Copies | None = None  # the web copies of emails (`/v/{token}`)
    clicks: Clicks | None = None  # link clicks (`/c/{token}`)
    click_flush_interval: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Web:
        engine = make_engine(settings.database_url, busy_timeout=settings.unsubscribe_busy_timeout)
        database = engine.url.database
        journal = None
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            journal = Journal.beside(database)
        writers = 1 if engine.dialect.name == "sqlite" else WRITE_THREADS
        signer = TokenSigner(settings.unsubscribe_keys())
        return cls(
            engine=engine,
            signer=signer,
            pages=Pages(shop_name(settings.mail_from)),
            writer=ConsentWriter(engine, WriteLock(engine), journal),
            reads=ThreadPoolExecutor(READ_THREADS, thread_name_prefix="unsubscribe-read"),
            writes=ThreadPoolExecutor(writers, thread_name_prefix="unsubscribe-write"),
            retry_interval=settings.unsubscribe_retry_interval,
            copies=Copies(engine, signer, settings),
            clicks=Clicks(
                engine,
                ClickSigner(settings.unsubscribe_keys()),
                dedupe_key=_dedupe_key(settings),
                scanner_seconds=settings.click_scanner_seconds,
            ),
            click_flush_interval=settings.click_flush_interval,
        )

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking read on the read threads."""
        return await asyncio.get_running_loop().run_in_executor(self.reads, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking write on the write threads."""
        return await asyncio.get_running_loop().run_in_executor(self.writes, fn, *args)

    async def keep_flushing(self) -> None:
        """Apply the journal's changes every `retry_interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await self.write(self.writer.flush)
            except SQLAlchemyError as exc:
                log.warning("kept consent changes not recorded yet: %s", exc)

    async def keep_counting(self) -> None:
        """Write the clicks counted every `click_flush_interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.click_flush_interval)
            await self.flush_clicks()

    async def flush_clicks(self) -> None:
        if self.clicks is None or not self.clicks.pending():
            return
        try:
            await self.write(self.clicks.flush)
        except SQLAlchemyError as exc:  # kept in memory: the next flush tries again
            log.warning("clicks not recorded yet: %s", exc)

    def close(self) -> None:
        self.reads.shutdown(wait=True)
        self.writes.shutdown(wait=True)
        self.writer.lock.close()
        self.engine.dispose()


def _dedupe_key(settings: Settings) -> bytes:
    """The unique clickers' hash key: from SUPPRESSION_KEY, which is never rotated; a
    server started without it uses the unsubscribe key (a rotation then counts a
    clicker again) rather than refusing to start."""
    try:
        return dedupe_key(settings.suppression_key_bytes())
    except ConfigurationError:
        log.warning("SUPPRESSION_KEY is not set: unique clicks keyed by UNSUBSCRIBE_SECRET")
        return dedupe_key(settings.unsubscribe_keys()[0])


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


# ------------------------------------------------------------------------ endpoints


async def confirm_page(request: Request) -> Response:
    """GET: the page with the button. Never changes anything."""
    web = _web(request)
    token = request.path_params["token"]
    claims = web.signer.verify(token)
    found = await web.read(web.writer.look_up, claims)
    if not found.opted_in:
        return web.pages.done(
            channel=claims.channel.value,
            address=found.address,
            changed=False,
            resubscribe_action=f"{token}/resubscribe",
        )
    return web.pages.confirm(
        channel=claims.channel.value, address=found.address, unsubscribe_action=token
    )


async def unsubscribe_endpoint(request: Request) -> Response:
    """POST: the opt-out, from the page's button or an RFC 8058 one-click request."""
    web = _web(request)
    token = request.path_params["token"]
    claims = web.signer.verify(token)
    source = await consent_source(request)
    found, changed = await web.write(web.writer.unsubscribe, claims, source)
    if changed:
        log.info("member %s opted out of %s (%s)", claims.member_id, claims.channel, source)
    return web.pages.done(
        channel=claims.channel.value,
        address=found.address,
        changed=changed,
        resubscribe_action=f"{token}/resubscribe",
    )


async def token_endpoint(request: Request) -> Response:
    """`/u/{token}`: the page (GET, HEAD) or the opt-out (POST)."""
    if request.method == "POST":
        return await unsubscribe_endpoint(request)
    return await confirm_page(request)


async def resubscribe_endpoint(request: Request) -> Response:
    """POST: the undo button of the confirmation page."""
    web = _web(request)
    token = request.path_params["token"]
    claims = web.signer.verify(token)
    found, changed = await web.write(web.writer.undo, claims)
    if changed:
        log.info("member %s opted back in to %s (link)", claims.member_id, claims.channel)
    return web.pages.confirm(
        channel=claims.channel.value,
        address=found.address,
        resubscribed=True,
        unsubscribe_action=f"../{token}",  # relative to /u/{token}/resubscribe
    )


async def web_copy(request: Request) -> Response:
    """GET: the member's copy of a campaign's email. Changes nothing."""
    web = _web(request)
    claims = web.signer.verify_view(request.path_params["token"])
    assert web.copies is not None
    return HTMLResponse(await web.read(web.copies.render, claims))


async def click_endpoint(request: Request) -> Response:
    """GET: count the click and redirect to the campaign's link; HEAD: redirect only.
    A token that is not genuine, or names no link, gets the 404 page."""
    web = _web(request)
    assert web.clicks is not None
    try:
        click = web.clicks.signer.verify(request.path_params["token"])
    except TokenError:
        return web.pages.error(404)
    known, links = web.clicks.cached_links(click.campaign_id)
    if not known:
        links = await web.read(web.clicks.load_links, click.campaign_id)
    if links is None or click.link >= len(links):
        return web.pages.error(404)
    if request.method == "GET":
        web.clicks.count(click, utcnow(), request.headers.get("user-agent", ""))
    return RedirectResponse(links[click.link], status_code=302, headers=NO_STORE)


async def healthz(request: Request) -> Response:
    web = _web(request)
    try:
        await web.read(ping, web.engine)
    except SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", exc)
        return PlainTextResponse("database unavailable", status_code=503)
    return PlainTextResponse("ok")


async def consent_source(request: Request) -> ConsentSource:
    """`one-click` for an RFC 8058 body (`List-Unsubscribe=One-Click`, form-urlencoded or
    multipart), `link` for anything else (the page's own button sends an empty form).

    The body only decides the source: one that cannot be read (multipart without a
    boundary, garbage, more than 16 fields) is `link`, and the token still opts out."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    fields: list[tuple[str, str]]
    try:
        if content_type == "multipart/form-data":
            async with request.form(
                max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_BODY
            ) as form:
                fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        else:
            body = (await request.body()).decode("utf-8", "replace")
            fields = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (HTTPException, ValueError):  # Starlette's 400 for a form it cannot parse
        return ConsentSource.LINK
    one_click = any((k.strip().lower(), v.strip().lower()) == _ONE_CLICK for k, v in fields)
    return ConsentSource.ONE_CLICK if one_click else ConsentSource.LINK


# --------------------------------------------------------------------------- errors


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _web(request).pages.error(exc.status_code, headers=exc.headers)


async def _bad_token(request: Request, exc: Exception) -> Response:
    return _web(request).pages.error(400)


async def _database_down(request: Request, exc: Exception) -> Response:
    log.warning("the database does not answer: %s", exc)
    return _web(request).pages.error(503, headers={"Retry-After": "60"})


async def _server_error(request: Request, exc: Exception) -> Response:
    # Sent by Starlette's outermost middleware, past `Guard`: add the headers here too.
    return _web(request).pages.error(500, headers=SECURITY_HEADERS)


# ------------------------------------------------------------------------------ app


def create_app(settings: Settings | None = None) -> Starlette:
    """The unsubscribe app. Its settings are read at start-up (from the environment
    when not given), and the engine, token signer and pages are built once then.
    Tokens are masked in uvicorn's access log from here on."""
    accesslog.install()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        web = Web.from_settings(settings if settings is not None else get_settings())
        app.state.web = web
        try:
            await web.write(web.writer.flush)  # what an earlier run kept
        except SQLAlchemyError as exc:
            log.warning("kept consent changes not recorded yet: %s", exc)
        flushing = asyncio.create_task(web.keep_flushing())
        counting = asyncio.create_task(web.keep_counting())
        try:
            yield
        finally:
            for task in (flushing, counting):
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await web.flush_clicks()  # the clicks of the last moments
            try:
                await web.write(web.writer.flush)
            except SQLAlchemyError as exc:  # kept on disk: the next start records them
                log.warning("kept consent changes not recorded yet: %s", exc)
            web.close()

    app = Starlette(
        routes=[
            # One route for both methods, so that a 405 says `Allow: GET, HEAD, POST`.
            Route("/u/{token}", token_endpoint, methods=["GET", "POST"]),
            Route("/u/{token}/resubscribe", resubscribe_endpoint, methods=["POST"]),
            Route("/v/{token}", web_copy, methods=["GET"]),
            Route("/c/{token}", click_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(Guard)],
        exception_handlers={
            HTTPException: _http_error,
            TokenError: _bad_token,
            NotFoundError: _bad_token,
            OperationalError: _database_down,
            500: _server_error,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a redirect would break RFC 8058 one-click
    return app
