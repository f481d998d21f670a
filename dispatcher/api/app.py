"""The Starlette app of the shop's API: routes, endpoints, errors; built by `create_app`."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.api.bodies import BatchBody, BatchMember, ConsentBody, MemberFields, problems
from dispatcher.api.limits import BodyLimit, RateLimit
from dispatcher.api.openapi import openapi
from dispatcher.audience.addresses import AddressKeys, address_keys
from dispatcher.audience.consent import consent_changes, set_consent
from dispatcher.audience.members import (
    ImportReport,
    MemberRecord,
    Problem,
    check_record,
    upsert_members,
)
from dispatcher.delivery.privacy import erase_member, export_member
from dispatcher.errors import NotFoundError
from dispatcher.settings import Settings, get_settings
from dispatcher.store.apikeys import authenticate
from dispatcher.store.db import make_engine
from dispatcher.store.models import ConsentEvent, ConsentSource
from dispatcher.store.schema import ensure_current

log = logging.getLogger("dispatcher.api")

PREFIX = "/api/v1"
FEED_LIMIT = 100  # changes per page by default
MAX_FEED_LIMIT = 1000
_CURSOR = "c1:"
MAX_EVENT_ID = 2**31 - 1  # consent_event.id is an INTEGER on PostgreSQL


@dataclass(frozen=True)
class Api:
    """What the endpoints share, built once at start-up from the settings."""

    engine: Engine
    rate: RateLimit
    keys: AddressKeys  # members' address keys, set as they are written

    @classmethod
    def from_settings(cls, settings: Settings) -> Api:
        engine = make_engine(settings.database_url)
        embedded = settings.inline and engine.dialect.name == "sqlite"
        ensure_current(engine, auto_upgrade=embedded)
        return cls(
            engine=engine, rate=RateLimit(settings.api_rate_limit), keys=address_keys(settings)
        )


Endpoint = Callable[[Request, Api], Awaitable[Response]]


def authorised(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint behind the key check (401, the same for a missing, wrong or revoked
    key) and the key's rate (429)."""

    async def checked(request: Request) -> Response:
        api: Api = request.app.state.api
        header = request.headers.get("authorization")
        name = await run_in_threadpool(authenticate, api.engine, header)
        if name is None:
            return _error(401, "a valid API key is required", {"WWW-Authenticate": "Bearer"})
        wait = api.rate.wait(name)
        if wait:
            return _error(429, "too many requests for this key", {"Retry-After": str(wait)})
        request.state.key = name
        return await endpoint(request, api)

    return checked


# ------------------------------------------------------------------------ endpoints


async def put_member(request: Request, api: Api) -> Response:
    external_id = request.path_params["external_id"]
    try:
        fields = MemberFields.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(problems(exc))
    record, found = check_record(0, fields.cells(external_id), {}, at="index")
    if record is None:
        return _invalid(found)
    report = ImportReport()
    await run_in_threadpool(upsert_members, api.engine, [record], report, api.keys)
    log.info("api %s: member %s put", request.state.key, external_id)
    body = {
        "external_id": record.external_id,
        "created": bool(report.created),
        "changed": bool(report.created or report.updated),
        "kept_opted_out": bool(report.kept_opted_out),
    }
    return JSONResponse(body, status_code=201 if report.created else 200)


async def post_batch(request: Request, api: Api) -> Response:
    try:
        batch = BatchBody.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(problems(exc))
    records: list[MemberRecord] = []
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for index, raw in enumerate(batch.members):
        external_id = raw.get("external_id") if isinstance(raw, dict) else None
        try:
            item = BatchMember.model_validate(raw)
        except ValidationError as exc:
            found = problems(exc, whole="member")
            errors.extend(_batch_error(index, external_id, p) for p in found)
            continue
        cells = item.cells(item.external_id)
        record, found = check_record(index, cells, first_seen, at="index")
        errors.extend(_batch_error(index, item.external_id, p) for p in found)
        if record is not None:
            records.append(record)
    if records:
        await run_in_threadpool(upsert_members, api.engine, records, ImportReport(), api.keys)
    log.info(
        "api %s: batch of %d, %d applied, %d errors",
        request.state.key,
        len(batch.members),
        len(records),
        len(errors),
    )
    return JSONResponse({"applied": len(records), "errors": errors})


async def patch_consent(request: Request, api: Api) -> Response:
    external_id = request.path_params["external_id"]
    try:
        body = ConsentBody.model_validate(await _json(request))
    except ValidationError as exc:
        return _invalid(problems(exc))
    changed = await run_in_threadpool(
        set_consent, api.engine, external_id, body.channel, body.opt_in, ConsentSource.API
    )
    log.info("api %s: member %s consent %s", request.state.key, external_id, body.channel)
    return JSONResponse(
        {
            "external_id": external_id,
            "channel": body.channel.value,
            "opt_in": body.opt_in,
            "changed": changed,
        }
    )


async def get_consent_changes(request: Request, api: Api) -> Response:
    after = request.query_params.get("after")
    after_id = _read_cursor(after) if after else None
    limit = _whole_number(request.query_params.get("limit", str(FEED_LIMIT)), MAX_FEED_LIMIT)
    if limit is None or limit < 1:
        return _invalid([Problem("limit", f"must be a whole number from 1 to {MAX_FEED_LIMIT}")])
    if after_id and after_id > await run_in_threadpool(_last_event_id, api.engine):
        raise HTTPException(400, "`after` is beyond the last change of this feed")
    changes = await run_in_threadpool(
        lambda: consent_changes(api.engine, after_id=after_id, limit=limit)
    )
    last = changes[-1].id if changes else (after_id or 0)
    return JSONResponse(
        {
            "changes": [
                {
                    "external_id": change.external_id,
                    "channel": change.channel,
                    "opt_in": change.opt_in,
                    "source": change.source,
                    "at": change.at.isoformat(),
                }
                for change in changes
            ],
            "cursor": _cursor(last),
        }
    )


async def get_member(request: Request, api: Api) -> Response:
    found = await run_in_threadpool(export_member, api.engine, request.path_params["external_id"])
    return JSONResponse(found)


async def delete_member(request: Request, api: Api) -> Response:
    external_id = request.path_params["external_id"]
    erasure = await run_in_threadpool(erase_member, api.engine, external_id)
    log.info("api %s: member %s erased", request.state.key, external_id)
    return JSONResponse(
        {
            "erased": external_id,
            "deliveries_anonymised": erasure.deliveries_anonymised,
            "pending_skipped": erasure.pending_skipped,
            "consent_events_anonymised": erasure.consent_events_anonymised,
        }
    )


async def openapi_json(request: Request) -> Response:
    return JSONResponse(openapi())


async def healthz(request: Request) -> Response:
    api: Api = request.app.state.api
    try:
        await run_in_threadpool(_ping, api.engine)
    except SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", exc)
        return _error(503, "database unavailable")
    return JSONResponse({"ok": True})


# ------------------------------------------------------------------------- helpers


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not JSON") from None
    except RecursionError:
        raise HTTPException(400, "the body is JSON nested too deep") from None


def _cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR}{event_id}".encode()).decode().rstrip("=")


def _read_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        text = ""
    number = _whole_number(text.removeprefix(_CURSOR), MAX_EVENT_ID)
    if not text.startswith(_CURSOR) or number is None:
        raise HTTPException(400, "`after` is not a cursor of this feed")
    return number


def _whole_number(text: str, most: int) -> int | None:
    """`text` as a number from 0 to `most`, ASCII digits only; None otherwise."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    number = int(text)
    return number if number <= most else None


def _last_event_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.max(ConsentEvent.id))).scalar() or 0


def _batch_error(index: int, external_id: Any, problem: Problem) -> dict[str, Any]:
    return {
        "index": index,
        "external_id": external_id if isinstance(external_id, str) and external_id else None,
        "field": problem.field,
        "reason": problem.reason,
    }


def _invalid(found: list[Problem]) -> Response:
    errors = [{"field": p.field, "reason": p.reason} for p in found]
    return JSONResponse({"errors": errors}, status_code=422)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, exc.headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, "no such member")


async def _database_down(request: Request, exc: Exception) -> Response:
    log.warning("the database does not answer: %s", exc)
    return _error(503, "database unavailable", {"Retry-After": "60"})


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, "internal error")


# ------------------------------------------------------------------------------ app


def create_app(settings: Settings | None = None) -> Starlette:
    """The shop's API. Its settings are read at start-up (from the environment when not
    given); the engine and the rate limiter are built once then."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api = Api.from_settings(settings if settings is not None else get_settings())
        app.state.api = api
        try:
            yield
        finally:
            api.engine.dispose()

    member = f"{PREFIX}/members/{{external_id}}"
    return Starlette(
        routes=[
            Route(f"{PREFIX}/members/batch", authorised(post_batch), methods=["POST"]),
            Route(member, authorised(put_member), methods=["PUT"]),
            Route(member, authorised(get_member), methods=["GET"]),
            Route(member, authorised(delete_member), methods=["DELETE"]),
            Route(f"{member}/consent", authorised(patch_consent), methods=["PATCH"]),
            Route(f"{PREFIX}/consent-changes", authorised(get_consent_changes), methods=["GET"]),
            Route(f"{PREFIX}/openapi.json", openapi_json, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[Middleware(BodyLimit)],
        exception_handlers={
            HTTPException: _http_error,
            NotFoundError: _not_found,
            OperationalError: _database_down,
            500: _server_error,
        },
        lifespan=lifespan,
    )
