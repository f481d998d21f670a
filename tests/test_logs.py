"""Log lines: one JSON object per event, addresses masked wherever they slip in."""

from __future__ import annotations

import io
import json
import logging

from dispatcher.logs import JsonFormatter, MaskingFilter, install, mask


def test_addresses_and_numbers_are_masked_anywhere_in_a_message() -> None:
    line = mask("550 <ali.rezaei@gmail.com> rejected; sms to +989121234567 or 09121234567")
    assert "ali.rezaei" not in line and "a***@gmail.com" in line
    assert "+98912***4567" in line
    assert "09121234567" not in line
    assert mask("delivery 1234: sent") == "delivery 1234: sent"


def test_json_lines_carry_campaign_delivery_and_outcome_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, json_lines=True)
    log = logging.getLogger("dispatcher.test-logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info(
            "delivery %s: failed (%s)",
            7,
            "550 no such user zahra@example.com",
            extra={"campaign": "yalda-1405", "delivery": 7, "outcome": "failed"},
        )
    finally:
        log.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "delivery 7: failed (550 no such user z***@example.com)"
    assert (record["campaign"], record["delivery"], record["outcome"]) == (
        "yalda-1405",
        7,
        "failed",
    )
    assert record["level"] == "info" and record["logger"] == "dispatcher.test-logs"


def test_installing_twice_masks_once() -> None:
    handler = logging.StreamHandler(io.StringIO())
    install(handler, json_lines=False)
    install(handler, json_lines=False)
    assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
    assert not isinstance(handler.formatter, JsonFormatter)


def test_the_actors_delivery_lines_give_delivery_and_outcome() -> None:
    record = logging.LogRecord(
        "dispatcher.email", logging.INFO, "", 0, "delivery %s: sent", (42,), None
    )
    assert json.loads(JsonFormatter().format(record))["outcome"] == "sent"
    assert json.loads(JsonFormatter().format(record))["delivery"] == 42


def test_an_exception_quoting_an_address_is_masked_in_text_logs() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, json_lines=False)
    log = logging.getLogger("test.masked.exception")
    log.addHandler(handler)
    log.propagate = False
    try:
        raise RuntimeError("450 4.2.1 <ali.rezaei@gmail.com>: mailbox busy, call +989121234567")
    except RuntimeError:
        log.exception("delivery 7: will retry")
    out = stream.getvalue()
    assert "mailbox busy" in out and "Traceback" in out
    assert "ali.rezaei@gmail.com" not in out and "+989121234567" not in out
