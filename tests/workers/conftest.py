from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.settings import Settings
from tests.factories import Harness, harness


@pytest.fixture
def fast_retries() -> Iterator[None]:
    """Retry after milliseconds instead of seconds, for tests that wait for a retry."""
    from dispatcher.workers import ACTORS

    saved = {name: dict(actor.options) for name, actor in ACTORS.items()}
    for actor in ACTORS.values():
        actor.options.update(min_backoff=20, max_backoff=100)
    yield
    for name, actor in ACTORS.items():
        actor.options.clear()
        actor.options.update(saved[name])


@pytest.fixture
def pipeline(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> Iterator[Callable[..., Harness]]:
    """`pipeline(**settings)` -> a Harness on the test's database (SQLite and PostgreSQL)."""
    stack: list[Any] = []

    def create(**overrides: Any) -> Harness:
        overrides.setdefault("database_url", database_url)
        cm = harness(make_settings(**overrides))
        stack.append(cm)
        return cm.__enter__()

    yield create
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
