"""Log stores on real PostgreSQL and DynamoDB Local, built as the logging service builds them."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aioboto3
import asyncpg
import pytest
from aiobotocore.config import AioConfig

from chassis.ids import new_id
from migration.control import ControlPlane
from migration.hybrid import HybridTable
from migration.relay import Relay
from migration.runtime import hybrid_table
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher
from services.logging.adapters.dynamodb import DynamoLogRepository, LogTableLayout, ensure_log_table
from services.logging.adapters.postgres import LogPartitions, PostgresLogRepository
from services.logging.bootstrap import log_store
from services.logging.domain import LogEntry, LogLevel
from services.logging.schema import upgrade_to_head as upgrade_logging_schema
from services.logging.store import INDEX_READ_KINDS, HybridLogStore
from tests.integration.conftest import (
    TEST_HYBRID_SETTINGS,
    OwnDynamo,
    delete_table_if_present,
    follow_stage,
    stand_in_for_a_verified_reverse_sync,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

RETENTION_DAYS = 30
TABLE = "logs"


def dynamodb_session() -> aioboto3.Session:
    return aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")


def refuse_scan(**_: Any) -> None:
    raise AssertionError("a log access pattern used Scan")


def recent_hour() -> datetime:
    """A few hours ago, on the hour: inside the retention window, with room for entries across hours."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def a_service() -> str:
    """A fresh service name, so tests sharing the stores never see each other's entries."""
    return f"svc-{secrets.token_hex(4)}"


def a_trace() -> str:
    return secrets.token_hex(16)


def an_entry(service: str, time: datetime, level: LogLevel = LogLevel.INFO, **changes: Any) -> LogEntry:
    fields: dict[str, Any] = {
        "id": new_id(),
        "time": time,
        "service": service,
        "level": level,
        "message": f"event at {time.isoformat()}",
        "attributes": {"component": "test", "note": "naïve ✓"},
        "trace_id": "",
        "span_id": "",
    }
    fields.update(changes)
    return LogEntry(**fields)


@pytest.fixture(scope="module")
async def log_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_logging_schema(postgres_dsn)
    await upgrade_migration_schema(postgres_dsn)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=8)
    await LogPartitions(pool, RETENTION_DAYS).maintain()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    """One client for the module, as in a process; any Scan through it fails the test that issued it."""
    async with dynamodb_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        client.meta.events.register("before-call.dynamodb.Scan", refuse_scan)
        yield client


@pytest.fixture(scope="module")
async def log_table(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    table = f"logs-test-{secrets.token_hex(4)}"
    await ensure_log_table(dynamodb, table, poll_seconds=0.05)
    try:
        yield table
    finally:
        await dynamodb.delete_table(TableName=table)


@dataclass
class LogReplica:
    """One logging-service replica's view: its mode watcher, hybrid table, store and relay."""

    watcher: ModeWatcher
    hybrid: HybridTable
    store: HybridLogStore
    relay: Relay


@dataclass
class LogHarness:
    """Hybrid log stores over one PostgreSQL and one DynamoDB table, with the control plane that drives them."""

    postgres_dsn: str
    pool: asyncpg.Pool
    table_name: str
    control: ControlPlane
    postgres: PostgresLogRepository
    dynamo_client: DynamoDBClient
    layout: LogTableLayout
    replicas: list[LogReplica] = field(default_factory=list)

    @property
    def dynamo(self) -> DynamoLogRepository:
        return DynamoLogRepository(self.dynamo_client, self.table_name, self.layout)

    async def replica(self, settle_seconds: float = 0.0, **settings: Any) -> LogReplica:
        """A service replica's machinery, built as the service builds it. DynamoDB Local is consistent at once, so
        copies need no settling time unless a test is about it (`settle_seconds`); `settings` override
        HybridSettings."""
        watcher = ModeWatcher(self.postgres_dsn, self.control, poll_interval=30)
        await watcher.start()
        tuned = dataclasses.replace(TEST_HYBRID_SETTINGS, **settings)
        hybrid = hybrid_table(
            TABLE,
            lambda: watcher.mode(TABLE),
            self.pool,
            tuned,
            settle=timedelta(seconds=settle_seconds),
            index_read_kinds=INDEX_READ_KINDS,
            lease=timedelta(seconds=1),
        )
        # A batch is many requests: never shorter than 0.5 s, even where an outage test shortens single calls.
        batch_timeout = max(0.5, tuned.dynamo_timeout_seconds)
        store = log_store(hybrid, self.pool, self.dynamo_client, self.table_name, self.layout, batch_timeout)
        replica = LogReplica(watcher, hybrid, store, Relay(hybrid.journal, store.replicate))
        self.replicas.append(replica)
        return replica

    async def set_stage(self, stage: Stage, fallback: bool = True, *, postgres_complete: bool = True) -> None:
        """Change the mode through the control plane and wait until every replica follows (≤ 1 s); see
        follow_stage for `postgres_complete`."""
        watchers = [r.watcher for r in self.replicas]
        await follow_stage(
            self.pool, self.control, watchers, TABLE, stage, fallback, postgres_complete=postgres_complete
        )

    async def in_postgres(self, service: str, start: datetime) -> list[LogEntry]:
        return await self.postgres.query(service, start, start + timedelta(days=1), LogLevel.DEBUG, None, 10_000)

    async def in_dynamo(self, service: str, start: datetime) -> list[LogEntry]:
        return await self.dynamo.query(service, start, start + timedelta(days=1), LogLevel.DEBUG, None, 10_000)


async def _log_harness(postgres_dsn: str, pool: asyncpg.Pool, endpoint: str) -> AsyncIterator[LogHarness]:
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    async with dynamodb_session().client("dynamodb", endpoint_url=endpoint, config=config) as client:
        client.meta.events.register("before-call.dynamodb.Scan", refuse_scan)
        table_name = f"logs-hybrid-{secrets.token_hex(4)}"
        await ensure_log_table(client, table_name, poll_seconds=0.05)
        # Tests move through every stage; the dynamo_only guard has its own test in test_migration_control.
        control = ControlPlane(pool, guards=())
        await control.seed({TABLE: TableMode(TABLE, Stage.DUAL_WRITE, True)}, who="test")
        await stand_in_for_a_verified_reverse_sync(pool, TABLE)  # whatever an earlier module left behind
        layout = LogTableLayout(shards=4)
        harness = LogHarness(postgres_dsn, pool, table_name, control, PostgresLogRepository(pool), client, layout)
        try:
            yield harness
        finally:
            for replica in harness.replicas:
                await replica.hybrid.wait_for_shadow_reads()
                await replica.watcher.stop()
            await pool.execute("DELETE FROM migration.journal WHERE table_name = $1", TABLE)
            await pool.execute("DELETE FROM migration.journal_settling WHERE table_name = $1", TABLE)
            # A log table has TTL: left behind, it would hold a DynamoDB Local background thread for good (see
            # tests/integration/conftest.py) and, from the 7th such table on, GSIs added later never get built.
            await delete_table_if_present(client, table_name)


@pytest.fixture
async def log_harness(postgres_dsn: str, log_pool: asyncpg.Pool, dynamodb_endpoint: str) -> AsyncIterator[LogHarness]:
    async for harness in _log_harness(postgres_dsn, log_pool, dynamodb_endpoint):
        yield harness


@pytest.fixture
async def log_outage_harness(
    postgres_dsn: str, log_pool: asyncpg.Pool, own_dynamo: OwnDynamo
) -> AsyncIterator[tuple[LogHarness, OwnDynamo]]:
    async for harness in _log_harness(postgres_dsn, log_pool, own_dynamo.server.endpoint):
        try:
            yield harness, own_dynamo
        finally:
            own_dynamo.thaw()
