"""The shop's private API: members, their consent and their data (never on the public
unsubscribe server). Run as `uvicorn dispatcher.api:app` (Procfile `api`).

    PUT    /api/v1/members/{external_id}          create or update (the import's rules)
    POST   /api/v1/members/batch                  up to 1,000 in one transaction
    PATCH  /api/v1/members/{external_id}/consent  opt out or back in (source `api`)
    GET    /api/v1/consent-changes                the consent feed, with a cursor
    GET    /api/v1/members/{external_id}          everything stored about the member
    DELETE /api/v1/members/{external_id}          erasure
    GET    /api/v1/openapi.json                   the description

Keys are made by `dispatcher api-key` and kept in `dispatcher.store.apikeys`.
"""

# The app
from dispatcher.api.app import create_app

__all__ = ["app", "create_app"]

app = create_app()
