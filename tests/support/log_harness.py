"""Hybrid log stores built as the service builds them, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from aiobotocore.config import AioConfig

from migration.control import ControlPlane
from migration.hybrid import HybridTable
from migration.relay import Relay
from migration.runtime import hybrid_table
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher
from services.logging.adapters.dynamodb import DynamoLogRepository, LogTableLayout, ensure_log_table
from services.logging.adapters.postgres import PostgresLogRepository
from services.logging.bootstrap import log_store
from services.logging.domain import LogEntry, LogLevel
from services.logging.store import INDEX_READ_KINDS, HybridLogStore
from tests.support.dynamodb import delete_table_if_present, local_session, refuse_scan
from tests.support.stages import TEST_HYBRID_SETTINGS, follow_stage, stand_in_for_a_verified_reverse_sync

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


TABLE = "logs"


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


async def build_log_harness(postgres_dsn: str, pool: asyncpg.Pool, endpoint: str) -> AsyncIterator[LogHarness]:
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    async with local_session().client("dynamodb", endpoint_url=endpoint, config=config) as client:
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
