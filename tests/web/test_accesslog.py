"""Tokens kept out of uvicorn's access log (the real server: tests/web/test_app.py)."""

from __future__ import annotations

import logging

import pytest

from dispatcher.web.accesslog import ACCESS_LOGGER, MaskTokens, install, mask_tokens

TOKEN = "AQEAAAAAAAAAAVucFvWR2KrQWhYGwzdCVPo"


def test_every_token_path_is_masked_and_nothing_else() -> None:
    assert mask_tokens(f"/u/{TOKEN}") == "/u/***"
    assert mask_tokens(f"/u/{TOKEN}/resubscribe") == "/u/***/resubscribe"
    assert mask_tokens(f"/u/{TOKEN}?utm_source=x") == "/u/***?utm_source=x"
    assert mask_tokens("/healthz") == "/healthz"


def test_the_access_loggers_records_are_masked_once_installed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install()
    install()  # twice: one filter
    logger = logging.getLogger(ACCESS_LOGGER)
    assert sum(isinstance(f, MaskTokens) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        logger.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "POST", f"/u/{TOKEN}", "1.1", 200)
    assert caplog.messages == ['1.2.3.4:5 - "POST /u/*** HTTP/1.1" 200']
    assert TOKEN not in caplog.text
