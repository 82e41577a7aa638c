"""Hybrid payment stores built as the service builds them, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import asyncpg
from aiobotocore.config import AioConfig

from migration.control import ControlPlane
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.bootstrap import payment_store
from services.payment.domain import Payment
from services.payment.store import INDEX_READ_KINDS, HybridPaymentStore, journal_item
from tests.support.dynamodb import local_session
from tests.support.hybrid_harness import HybridHarness, HybridReplica, dual_writing_control
from tests.support.stages import TEST_HYBRID_SETTINGS

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


TABLE = "payments"


Replica = HybridReplica[HybridPaymentStore]


@dataclass
class Harness(HybridHarness[HybridPaymentStore]):
    """Hybrid payment stores over one PostgreSQL and one DynamoDB table, with the control plane that drives them."""

    table: ClassVar[str] = TABLE
    index_read_kinds: ClassVar[Sequence[str]] = INDEX_READ_KINDS

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
        watcher, hybrid = await self._hybrid(dataclasses.replace(TEST_HYBRID_SETTINGS, **settings), settle_seconds)
        store = payment_store(hybrid, self.pool, self.dynamo_client, self.table_name)
        return self._joined(watcher, hybrid, store, store.replicate)

    async def in_postgres_only(self, replica: Replica, payment: Payment) -> None:
        """Writes `payment` as an acknowledged write whose DynamoDB copy has not happened yet (inline copy failed,
        relay behind): in PostgreSQL, with its journal entry pending."""
        async with self.pool.acquire() as connection, connection.transaction():
            await PostgresPaymentRepository(connection).create(payment)
            item = journal_item(payment)
            await replica.hybrid.journal.append(connection, item.key, item.version, item.routing_keys)

    async def in_postgres(self, payment: Payment) -> Payment | None:
        return await self.postgres.get(payment.id)

    async def in_dynamo(self, payment: Payment) -> Payment | None:
        return await self.dynamo.get(payment.id)


async def build_payment_harness(postgres_dsn: str, pool: asyncpg.Pool, endpoint: str) -> AsyncIterator[Harness]:
    config = AioConfig(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
    async with local_session().client("dynamodb", endpoint_url=endpoint, config=config) as client:
        table_name = f"payments-hybrid-{secrets.token_hex(4)}"
        await ensure_payment_table(client, table_name)
        control = await dual_writing_control(pool, TABLE)
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
            await harness.stop()
