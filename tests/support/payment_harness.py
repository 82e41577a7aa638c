"""Hybrid payment stores built as the service builds them, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from aiobotocore.config import AioConfig

from migration.control import ControlPlane
from migration.hybrid import HybridTable
from migration.relay import Relay
from migration.runtime import hybrid_table
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.bootstrap import payment_store
from services.payment.domain import Payment
from services.payment.store import INDEX_READ_KINDS, HybridPaymentStore
from tests.support.dynamodb import local_session
from tests.support.stages import TEST_HYBRID_SETTINGS, follow_stage, stand_in_for_a_verified_reverse_sync

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


TABLE = "payments"


@dataclass
class Replica:
    """One service replica's view: its mode watcher, hybrid table, store and relay."""

    watcher: ModeWatcher
    hybrid: HybridTable
    store: HybridPaymentStore
    relay: Relay


@dataclass
class Harness:
    postgres_dsn: str
    pool: asyncpg.Pool
    dynamo_client: DynamoDBClient
    table_name: str
    control: ControlPlane
    postgres: PostgresPaymentRepository
    dynamo: DynamoPaymentRepository
    replicas: list[Replica] = field(default_factory=list)

    async def replica(self, settle_seconds: float = 0.0, **settings: Any) -> Replica:
        """A service replica's machinery, built as the service builds it. DynamoDB Local is consistent at once, so
        copies need no settling time unless a test is about it (`settle_seconds`); `settings` override
        HybridSettings."""
        watcher = ModeWatcher(self.postgres_dsn, self.control, poll_interval=30)
        await watcher.start()
        hybrid = hybrid_table(
            TABLE,
            lambda: watcher.mode(TABLE),
            self.pool,
            dataclasses.replace(TEST_HYBRID_SETTINGS, **settings),
            settle=timedelta(seconds=settle_seconds),
            index_read_kinds=INDEX_READ_KINDS,
            lease=timedelta(seconds=1),
        )
        store = payment_store(hybrid, self.pool, self.dynamo_client, self.table_name)
        replica = Replica(watcher, hybrid, store, Relay(hybrid.journal, store.replicate))
        self.replicas.append(replica)
        return replica

    async def set_stage(self, stage: Stage, fallback: bool = True, *, postgres_complete: bool = True) -> None:
        """Change the mode through the control plane and wait until every replica follows (≤ 1 s); see
        follow_stage for `postgres_complete`."""
        watchers = [r.watcher for r in self.replicas]
        await follow_stage(
            self.pool, self.control, watchers, TABLE, stage, fallback, postgres_complete=postgres_complete
        )

    async def in_postgres(self, payment: Payment) -> Payment | None:
        return await self.postgres.get(payment.id)

    async def in_dynamo(self, payment: Payment) -> Payment | None:
        return await self.dynamo.get(payment.id)


async def build_payment_harness(postgres_dsn: str, pool: asyncpg.Pool, endpoint: str) -> AsyncIterator[Harness]:
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    async with local_session().client("dynamodb", endpoint_url=endpoint, config=config) as client:
        table_name = f"payments-hybrid-{secrets.token_hex(4)}"
        await ensure_payment_table(client, table_name)
        # Tests move through every stage; the dynamo_only guard (a clean verification) is the toolkit's
        # business and has its own test in test_migration_control.
        control = ControlPlane(pool, guards=())
        await control.seed({TABLE: TableMode(TABLE, Stage.DUAL_WRITE, True)}, who="test")
        await stand_in_for_a_verified_reverse_sync(pool, TABLE)  # whatever an earlier module left behind
        harness = Harness(
            postgres_dsn,
            pool,
            client,
            table_name,
            control,
            PostgresPaymentRepository(pool),
            DynamoPaymentRepository(client, table_name),
        )
        try:
            yield harness
        finally:
            for replica in harness.replicas:
                await replica.hybrid.wait_for_shadow_reads()
                await replica.watcher.stop()
            await pool.execute("DELETE FROM migration.journal WHERE table_name = $1", TABLE)
            await pool.execute("DELETE FROM migration.journal_settling WHERE table_name = $1", TABLE)
