"""Integration-test infrastructure shared by the services' suites: a DynamoDB Local to break, span capture, and a
check that no module leaves an expiring (TTL) table on the shared DynamoDB Local."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
import asyncpg
import pytest
from botocore.exceptions import ClientError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.dynamodb import DynamoDBLocal
from migration.control import ControlPlane, reverse_sync_pending
from migration.hybrid import HybridSettings
from migration.stages import Stage
from migration.watcher import ModeWatcher

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# Why a table with TTL must not outlive its test on the shared DynamoDB Local: DynamoDB Local (3.x) runs its
# background jobs - adding a GSI by UpdateTable, deleting a GSI, expiring items - on one fixed pool of 10 threads,
# three of which its job schedulers hold for good. For every table with TTL enabled it runs an expiry job that
# never finishes while the table exists (it scans, sleeps 10 s, scans again), so each such table takes one of the
# 7 remaining threads for as long as it lives. From the 7th table on, a GSI added by UpdateTable queues behind
# those jobs and stays CREATING forever (ensure_table then times out in a later, unrelated test module).
# Production DynamoDB has no such limit. So: delete every expiring table in the fixture that created it.


async def delete_table_if_present(client: DynamoDBClient, table_name: str) -> None:
    """Deletes a test's table; one already gone is fine (a test may drop its own)."""
    try:
        await client.delete_table(TableName=table_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise


async def expiring_tables(endpoint: str) -> set[str]:
    """The tables on `endpoint` with TTL enabled (or being enabled)."""
    session = aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    names: set[str] = set()
    async with session.client("dynamodb", endpoint_url=endpoint) as client:
        async for page in client.get_paginator("list_tables").paginate():
            for name in page.get("TableNames", []):
                try:
                    ttl = (await client.describe_time_to_live(TableName=name))["TimeToLiveDescription"]
                except ClientError as error:  # deleted since the listing
                    if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                        continue
                    raise
                if ttl.get("TimeToLiveStatus") in {"ENABLED", "ENABLING"}:
                    names.add(name)
    return names


# The hybrid harnesses' budgets: generous, since tests of the healthy path assert which store served and that inline
# copies landed, and on a busy CI machine a DynamoDB Local read has overrun 0.2 s; outage tests pass their own. Every
# read is shadowed.
TEST_HYBRID_SETTINGS = HybridSettings(
    dynamo_timeout_seconds=2.0, shadow_budget_seconds=2.0, breaker_recovery_seconds=1.0, shadow_sample_ratio=1.0
)


async def stand_in_for_a_verified_reverse_sync(pool: asyncpg.Pool, table: str) -> bool:
    """Records a clean reverse sync and full verification covering the table's last move out of dynamo_only, so
    PostgreSQL counts as complete again; for harness tests that walk stages freely (without guards) and are not about
    the way back. False if nothing was pending."""
    if await reverse_sync_pending(pool, table) is None:
        return False
    await pool.execute(
        """INSERT INTO migration.reverse_syncs (table_name, stage, started_by, covers_change, status, finished_at)
           SELECT $1, 'dynamo_primary', 'test', max(id), 'finished', clock_timestamp() FROM migration.mode_changes
           WHERE table_name = $1 AND from_stage = 'dynamo_only' AND to_stage <> 'dynamo_only'""",
        table,
    )
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ($1, true, true, 0, 0, clock_timestamp())""",
        table,
    )
    return True


async def follow_stage(
    pool: asyncpg.Pool,
    control: ControlPlane,
    watchers: Sequence[ModeWatcher],
    table: str,
    stage: Stage,
    fallback: bool,
    *,
    postgres_complete: bool = True,
) -> None:
    """Change a table's mode (no guards in harnesses) and wait until every replica's watcher follows (≤ 1 s).

    Leaving dynamo_only leaves PostgreSQL incomplete until a verified reverse sync; unless `postgres_complete` is
    false, a stand-in for that sync is recorded, so tests of other things see the usual behaviour."""
    await control.change(table, stage=stage, fallback=fallback, who="test")
    if postgres_complete and stage is not Stage.DYNAMO_ONLY and await stand_in_for_a_verified_reverse_sync(pool, table):
        for watcher in watchers:
            await watcher.refresh()  # the stand-in changes no mode, so nothing announces it
    wanted = (stage, fallback, postgres_complete and stage is not Stage.DYNAMO_ONLY)
    async with asyncio.timeout(1.0):
        while any(
            (w.mode(table).stage, w.mode(table).fallback, w.mode(table).postgres_complete) != wanted for w in watchers
        ):
            await asyncio.sleep(0.01)


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


def _thread_state(stat: Path) -> str:
    try:
        # /proc/<pid>/task/<tid>/stat: "tid (comm) state ..."; comm may hold spaces, so split after its ")".
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "T"  # a thread that ended meanwhile answers nothing


@dataclass
class OwnDynamo:
    """A DynamoDB Local only this test module uses, so it can be frozen (SIGSTOP) or killed safely."""

    server: DynamoDBLocal

    def freeze(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGSTOP)
        # kill() returns once the signal is sent; the JVM's threads stop as each is next scheduled. Wait until
        # every thread is stopped, so the next request cannot be answered by one still finishing its time slice.
        deadline = time.monotonic() + 5
        while not all(_thread_state(stat) == "T" for stat in Path(f"/proc/{self.server.pid}/task").glob("*/stat")):
            assert time.monotonic() < deadline, "DynamoDB Local did not stop within 5 s of SIGSTOP"
            time.sleep(0.01)

    def thaw(self) -> None:
        assert self.server.pid is not None
        os.kill(self.server.pid, signal.SIGCONT)


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
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
