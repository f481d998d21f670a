"""The OpenAPI description of the shop's API (`GET /api/v1/openapi.json`), its bodies'
schemas taken from the pydantic models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from dispatcher.api.bodies import MAX_BATCH, BatchMember, ConsentBody, MemberFields

_ERRORS = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        }
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_BATCH_RESULT = {
    "type": "object",
    "properties": {
        "applied": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "external_id": {"type": ["string", "null"]},
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_CHANGES = {
    "type": "object",
    "properties": {
        "changes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "external_id": {"type": ["string", "null"], "description": "null: erased"},
                    "channel": {"type": "string", "enum": ["email", "sms"]},
                    "opt_in": {"type": "boolean"},
                    "source": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                },
            },
        },
        "cursor": {"type": "string", "description": "pass back as `after`"},
    },
}
_EXTERNAL_ID = {
    "name": "external_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_COMMON = {
    "401": _json(_ERROR, "missing, wrong or revoked key"),
    "429": _json(_ERROR, "over API_RATE_LIMIT for this key (Retry-After)"),
}


@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    member = "/api/v1/members/{external_id}"
    batch_body = {
        "type": "object",
        "required": ["members"],
        "properties": {
            "members": {"type": "array", "maxItems": MAX_BATCH, "items": _ref("BatchMember")}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Campaign dispatcher: the shop's API",
            "version": "1",
            "description": "Members, their consent and their data. Bearer keys from "
            "`dispatcher api-key create NAME`. Bodies over 1 MiB get 413.",
        },
        "components": {
            "securitySchemes": {"key": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "MemberFields": MemberFields.model_json_schema(),
                "BatchMember": BatchMember.model_json_schema(),
                "ConsentBody": ConsentBody.model_json_schema(),
            },
        },
        "security": [{"key": []}],
        "paths": {
            member: {
                "parameters": [_EXTERNAL_ID],
                "put": {
                    "summary": "Create or update a member (the rules of `members import`)",
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("MemberFields")}}
                    },
                    "responses": {
                        "200": {"description": "updated (or unchanged)"},
                        "201": {"description": "created"},
                        "422": _json(_ERRORS, "invalid fields; nothing changed"),
                        **_COMMON,
                    },
                },
                "get": {
                    "summary": "Everything stored about the member",
                    "responses": {
                        "200": {"description": "profile, consent, history, deliveries"},
                        "404": _json(_ERROR, "no such member"),
                        **_COMMON,
                    },
                },
                "delete": {
                    "summary": "Erase the member's personal data",
                    "responses": {
                        "200": {"description": "erased"},
                        "404": _json(_ERROR, "no such member"),
                        **_COMMON,
                    },
                },
            },
            f"{member}/consent": {
                "parameters": [_EXTERNAL_ID],
                "patch": {
                    "summary": "Opt out of a channel or back in (source `api`)",
                    "requestBody": {
                        "content": {"application/json": {"schema": _ref("ConsentBody")}}
                    },
                    "responses": {
                        "200": {"description": "done"},
                        "404": _json(_ERROR, "no such member"),
                        "422": _json(_ERRORS, "invalid body"),
                        **_COMMON,
                    },
                },
            },
            "/api/v1/members/batch": {
                "post": {
                    "summary": f"Create or update up to {MAX_BATCH} members in one transaction",
                    "requestBody": {"content": {"application/json": {"schema": batch_body}}},
                    "responses": {
                        "200": _json(_BATCH_RESULT, "valid records applied, the others listed"),
                        **_COMMON,
                    },
                },
            },
            "/api/v1/consent-changes": {
                "get": {
                    "summary": "Every consent change, oldest first",
                    "parameters": [
                        {"name": "after", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {
                        "200": _json(_CHANGES, "the next changes and the cursor"),
                        **_COMMON,
                    },
                },
            },
        },
    }
