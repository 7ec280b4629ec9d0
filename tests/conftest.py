"""What every folder shares: the transcript corpus (../shared/corpus), which unit and
integration tests read, and the check that it is there. The fixtures on the real services
are in tests/integration/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import CORPUS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not CORPUS.is_dir():
        raise pytest.UsageError(f"the transcript corpus is missing: expected {CORPUS} (../shared/corpus)")


@pytest.fixture(scope="session")
def corpus() -> Path:
    return CORPUS
