"""Integration-test infrastructure shared by the services' suites: a DynamoDB Local to break, span capture, and a
check that no module leaves an expiring (TTL) table on the shared DynamoDB Local."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.dynamodb import DynamoDBLocal
from tests.support.dynamodb import OwnDynamo, expiring_tables
from tests.support.spans import collected_spans

if TYPE_CHECKING:
    pass

# Why a table with TTL must not outlive its test on the shared DynamoDB Local: DynamoDB Local (3.x) runs its
# background jobs - adding a GSI by UpdateTable, deleting a GSI, expiring items - on one fixed pool of 10 threads,
# three of which its job schedulers hold for good. For every table with TTL enabled it runs an expiry job that
# never finishes while the table exists (it scans, sleeps 10 s, scans again), so each such table takes one of the
# 7 remaining threads for as long as it lives. From the 7th table on, a GSI added by UpdateTable queues behind
# those jobs and stays CREATING forever (ensure_table then times out in a later, unrelated test module).
# Production DynamoDB has no such limit. So: delete every expiring table in the fixture that created it.


T = TypeVar("T")


def _in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine to the end in a thread of its own, away from the session's event loop (see below)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module", autouse=True)
def no_expiring_table_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the module (at teardown) that leaves a table with TTL on the shared DynamoDB Local: see above.

    A plain fixture: it asks for the (async, session-wide) DynamoDB only when its module uses it, and an async
    fixture cannot start another async fixture from inside the running loop (a module run alone failed so)."""
    uses_shared = any(
        getattr(item, "module", None) is request.module and "dynamodb_endpoint" in getattr(item, "fixturenames", ())
        for item in request.session.items
    )
    if not uses_shared:
        yield
        return
    endpoint: str = request.getfixturevalue("dynamodb_endpoint")
    before = _in_own_loop(expiring_tables(endpoint))
    yield
    left = sorted(_in_own_loop(expiring_tables(endpoint)) - before)
    assert not left, (
        f"{request.module.__name__} left tables with TTL on the shared DynamoDB Local: {left}. Each one holds a "
        "thread of DynamoDB Local's background pool until deleted, and from the 7th on GSIs added by UpdateTable "
        "never become ACTIVE; delete them in the fixture that creates them."
    )


@pytest.fixture(scope="module")
async def own_dynamo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OwnDynamo]:
    server = DynamoDBLocal(Path(tmp_path_factory.mktemp("own-dynamodb")), ephemeral=True)
    await server.start()
    own = OwnDynamo(server)
    try:
        yield own
    finally:
        own.thaw()
        await server.stop()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span this test process ends, collected in memory (the SDK's own test exporter)."""
    return collected_spans()
