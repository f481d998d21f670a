"""The unsubscribe endpoint, as an ASGI app: `uvicorn unsubscribe_server:app`.

It answers `{UNSUBSCRIBE_BASE_URL}/u/{token}` from every email footer and every
`List-Unsubscribe` header, and shares settings, database and token code with the
dispatcher package; everything lives in `dispatcher.web`. Settings are read from the
environment (and `.env`) when the server starts.
"""

from dispatcher.web import create_app

app = create_app()
