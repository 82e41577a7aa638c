"""Hybrid log stores built as the service builds them, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import asyncpg
from aiobotocore.config import AioConfig

from migration.control import ControlPlane
from services.logging.adapters.dynamodb import DynamoLogRepository, LogTableLayout, ensure_log_table
from services.logging.adapters.postgres import PostgresLogRepository
from services.logging.bootstrap import log_store
from services.logging.domain import LogBatch, LogEntry, LogLevel
from services.logging.store import BATCH_KEY_PREFIX, INDEX_READ_KINDS, HybridLogStore, routing_keys
from tests.support.dynamodb import delete_table_if_present, local_session, refuse_scan
from tests.support.hybrid_harness import HybridHarness, HybridReplica, dual_writing_control
from tests.support.stages import TEST_HYBRID_SETTINGS

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


TABLE = "logs"


LogReplica = HybridReplica[HybridLogStore]


@dataclass
class LogHarness(HybridHarness[HybridLogStore]):
    """Hybrid log stores over one PostgreSQL and one DynamoDB table, with the control plane that drives them."""

    table: ClassVar[str] = TABLE
    index_read_kinds: ClassVar[Sequence[str]] = INDEX_READ_KINDS

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
        tuned = dataclasses.replace(TEST_HYBRID_SETTINGS, **settings)
        watcher, hybrid = await self._hybrid(tuned, settle_seconds)
        # A batch is many requests: never shorter than 0.5 s, even where an outage test shortens single calls.
        batch_timeout = max(0.5, tuned.dynamo_timeout_seconds)
        store = log_store(hybrid, self.pool, self.dynamo_client, self.table_name, self.layout, batch_timeout)
        return self._joined(watcher, hybrid, store, store.replicate)

    async def in_postgres_only(self, replica: LogReplica, batch: LogBatch) -> None:
        """Writes `batch` as an acknowledged write whose DynamoDB copy has not happened yet (inline copy failed,
        relay behind): in PostgreSQL, with its journal entry pending."""
        async with self.pool.acquire() as connection, connection.transaction():
            await PostgresLogRepository(connection).write(batch)
            await replica.hybrid.journal.append(connection, f"{BATCH_KEY_PREFIX}{batch.id}", 1, routing_keys(batch))

    async def in_postgres(self, service: str, start: datetime) -> list[LogEntry]:
        return await self.postgres.query(service, start, start + timedelta(days=1), LogLevel.DEBUG, None, 10_000)

    async def in_dynamo(self, service: str, start: datetime) -> list[LogEntry]:
        return await self.dynamo.query(service, start, start + timedelta(days=1), LogLevel.DEBUG, None, 10_000)


async def build_log_harness(postgres_dsn: str, pool: asyncpg.Pool, endpoint: str) -> AsyncIterator[LogHarness]:
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    async with local_session().client("dynamodb", endpoint_url=endpoint, config=config) as client:
        client.meta.events.register("before-call.dynamodb.Scan", refuse_scan)
        table_name = f"logs-hybrid-{secrets.token_hex(4)}"
        await ensure_log_table(client, table_name, poll_seconds=0.05)
        control = await dual_writing_control(pool, TABLE)
        layout = LogTableLayout(shards=4)
        harness = LogHarness(postgres_dsn, pool, table_name, control, PostgresLogRepository(pool), client, layout)
        try:
            yield harness
        finally:
            await harness.stop()
            # A log table has TTL: left behind, it would hold a DynamoDB Local background thread for good (see
            # tests/integration/conftest.py) and, from the 7th such table on, GSIs added later never get built.
            await delete_table_if_present(client, table_name)
