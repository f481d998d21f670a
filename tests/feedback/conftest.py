"""Fixtures of the feedback tests: a harness on the Kavenegar test server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dispatcher.settings import Settings
from tests.factories import Harness, harness
from tests.feedback.sms import NOON, SENDER
from tests.servers.kavenegar_server import KavenegarServerHandle


@pytest.fixture
def sms_harness(
    make_settings: Callable[..., Settings],
    database_url: str,
    kavenegar_server: KavenegarServerHandle,
) -> Iterator[Callable[..., Harness]]:
    """`sms_harness(**settings)`: a harness on the Kavenegar test server, its clock at
    noon in Tehran."""
    with contextlib.ExitStack() as stack:

        def create(**extra: Any) -> Harness:
            settings = make_settings(
                database_url=database_url,
                kavenegar_api_key=kavenegar_server.api_key,
                kavenegar_sender=SENDER,
                kavenegar_base_url=kavenegar_server.base_url,
                **extra,
            )
            created = stack.enter_context(harness(settings))
            created.runtime.clock = lambda: NOON
            return created

        yield create


@pytest.fixture
def h(sms_harness: Callable[..., Harness]) -> Harness:
    return sms_harness()
