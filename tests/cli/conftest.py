"""The `dispatcher` command as a user runs it: a fresh folder holding the example campaigns."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import ROOT


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "campaigns", tmp_path / "campaigns")
    yield tmp_path
