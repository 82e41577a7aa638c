"""Stores for the migration toolkit's tests: schemas emptied, tables per test, history as before the migration."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from chassis.ids import new_id
from migration.control import ControlPlane
from migration.hybrid import HybridSettings, HybridTable
from migration.journal import Journal
from migration.relay import Relay
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from migration.table_spec import TableSpec
from services.logging.adapters.postgres import LogPartitions, PostgresLogRepository
from services.logging.domain import LogBatch, LogEntry, LogLevel
from services.logging.schema import upgrade_to_head as upgrade_logging_schema
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import COLUMNS, PostgresPaymentRepository, row_values
from services.payment.schema import upgrade_to_head as upgrade_payment_schema
from services.payment.store import HybridPaymentStore
from tests.support.payments import a_payment
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.specs import table_specs
from toolkit.verify import run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

    from services.payment.domain import Payment


LOG_SHARDS = 4


RETENTION = timedelta(days=30)


async def prepare_postgres(dsn: str) -> None:
    """Schemas at head and every table the toolkit reads or writes emptied, so counts are this test's own."""
    for upgrade in (upgrade_payment_schema, upgrade_logging_schema, upgrade_migration_schema):
        await upgrade(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """TRUNCATE payment.payments, logging.entries, migration.journal, migration.journal_settling,
                        migration.backfill_runs,
                        migration.verifications, migration.mode_changes, migration.table_modes,
                        migration.key_history, migration.key_history_gaps,
                        migration.promotion_decisions, migration.promotions, migration.watchdogs
               RESTART IDENTITY CASCADE"""
        )
    finally:
        await connection.close()


async def set_stage(executor: asyncpg.Pool | asyncpg.Connection, table: str, stage: Stage) -> None:
    await executor.execute(
        """INSERT INTO migration.table_modes (table_name, stage, fallback, updated_by) VALUES ($1, $2, true, 'test')
           ON CONFLICT (table_name) DO UPDATE SET stage = EXCLUDED.stage""",
        table,
        stage.value,
    )


async def insert_payments(executor: asyncpg.Pool | asyncpg.Connection, count: int) -> list[Payment]:
    """Historical payments written straight to PostgreSQL, as before the migration (none in DynamoDB)."""
    start = datetime.now(UTC) - timedelta(days=300)
    payments = [a_payment(paid_at=start + timedelta(minutes=n)) for n in range(count)]
    await executor.executemany(
        f"INSERT INTO payment.payments ({COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 14))})",  # noqa: S608
        [row_values(payment) for payment in payments],
    )
    return payments


async def insert_logs(
    pool: asyncpg.Pool, count: int, services: Sequence[str] = ("payment", "gateway", "customer")
) -> None:
    """Log entries of the last hours, in batches as the logging service writes them."""
    await LogPartitions(pool, RETENTION.days).maintain()
    now = datetime.now(UTC)
    entries = [
        LogEntry(
            id=new_id(),
            time=now - timedelta(seconds=7 * n),
            service=services[n % len(services)],
            level=LogLevel((n % 5) + 1),
            message=f"event {n}",
            attributes={"n": str(n)},
            trace_id=secrets.token_hex(16) if n % 3 == 0 else "",
        )
        for n in range(count)
    ]
    repository = PostgresLogRepository(pool)
    for start in range(0, count, 1000):
        await repository.write(LogBatch(new_id(), entries[start : start + 1000]))


@dataclass
class Stores:
    dsn: str
    pool: asyncpg.Pool
    dynamodb: DynamoDBClient
    endpoint: str
    prefix: str

    def table_name(self, table: str) -> str:
        return f"{self.prefix}-{table}"

    def specs(self, *tables: str) -> list[TableSpec]:
        return table_specs(tables or ("payments", "logs"), LOG_SHARDS, RETENTION)

    async def dynamo_keys(self, table: str) -> list[tuple[str, ...]]:
        """Every item's key, by Scan (tests only: the toolkit itself never loads a table)."""
        keys: list[tuple[str, ...]] = []
        request: dict[str, object] = {"TableName": self.table_name(table)}
        while True:
            response = await self.dynamodb.scan(**request)  # type: ignore[arg-type]
            keys += [
                tuple(value["S"] for name, value in sorted(item.items()) if name in ("pk", "sk"))
                for item in response["Items"]
            ]
            if "LastEvaluatedKey" not in response:
                return keys
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


@contextlib.asynccontextmanager
async def payment_service_store(
    stores: Stores, mode: TableMode, dynamo: DynamoPaymentRepository, settings: HybridSettings | None = None
) -> AsyncIterator[HybridPaymentStore]:
    """The payment service's hybrid store over these stores, held in `mode` (no watcher: the test sets the mode),
    with its relay running as in the service; on leaving, every write's DynamoDB copy has landed."""
    hybrid = HybridTable(
        "payments", lambda: mode, stores.pool, Journal(stores.pool, "payments"), settings or HybridSettings()
    )
    store = HybridPaymentStore(hybrid, PostgresPaymentRepository(stores.pool), PostgresPaymentRepository, dynamo)
    relay = Relay(hybrid.journal, store.replicate, idle_seconds=0.05)
    relaying = asyncio.create_task(relay.run())
    try:
        yield store
    finally:
        await hybrid.wait_for_copies()
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await relay.drain()  # what the relay had not reached yet


def toolkit_environment(dsn: str, endpoint: str, prefix: str) -> dict[str, str]:
    """What the `loanbook` command reads: the same stores and tables, DynamoDB Local's dummy credentials."""
    return {
        "LOANBOOK_MIGRATION_POSTGRES_DSN": dsn,
        "LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT": endpoint,
        "LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX": prefix,
        "LOANBOOK_MIGRATION_LOG_SHARDS": str(LOG_SHARDS),
        "LOANBOOK_MIGRATION_LOG_RETENTION_DAYS": str(RETENTION.days),
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }


async def migrated_to_dynamo_only(stores: Stores, payments: int = 200, logs: int = 300) -> ControlPlane:
    """History in PostgreSQL, backfilled and verified, both tables moved through every stage to dynamo_only."""
    await insert_payments(stores.pool, payments)
    await insert_logs(stores.pool, logs)
    control = ControlPlane(stores.pool)
    await control.ensure_defaults(who="test")
    for table in ("payments", "logs"):
        await control.change(table, stage=Stage.DUAL_WRITE, who="test")
    await run_backfill(stores.pool, stores.dynamodb, stores.specs(), stores.table_name, BackfillOptions(workers=2))
    assert all(v.clean for v in await run_verify(stores.pool, stores.dynamodb, stores.specs(), stores.table_name))
    for table in ("payments", "logs"):
        for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY, Stage.DYNAMO_ONLY):
            await control.change(table, stage=stage, who="test")
    return control
