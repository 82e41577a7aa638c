"""Session-wide test infrastructure: one PostgreSQL and one DynamoDB, chosen by devstack.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from devstack.testing import dynamodb_for_tests, postgres_for_tests


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_dsn() -> AsyncIterator[str]:
    """DSN of the `loanbook` role: LOANBOOK_TEST_POSTGRES_DSN, else a container, else a local server."""
    async with postgres_for_tests() as dsn:
        yield dsn


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dynamodb_endpoint() -> AsyncIterator[str]:
    """DynamoDB endpoint: LOANBOOK_TEST_DYNAMODB_ENDPOINT, else a container, else a local DynamoDB Local."""
    async with dynamodb_for_tests() as endpoint:
        yield endpoint


LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its layer, the folder under tests/ it lives in, so `-m unit` selects the quick loop."""
    tests = Path(__file__).parent
    for item in items:
        layer = item.path.relative_to(tests).parts[0]
        if layer in LAYERS:
            item.add_marker(layer)
