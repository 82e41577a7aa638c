"""Composition root of the logging service: the only place its adapters are chosen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import asyncpg

from chassis.dynamodb_tables import provide_table
from chassis.grpc_server import ServiceBinding
from chassis.page_tokens import PageTokens
from chassis.stores import dynamodb_client, dynamodb_readiness, postgres_pool, postgres_readiness
from loanbook.logging.v1 import logging_pb2, logging_pb2_grpc
from migration import schema as migration_schema
from migration.hybrid import HybridTable
from migration.runtime import open_hybrid_table, start_relay
from services.logging import schema
from services.logging.adapters.dynamodb import LOG_TABLE, DynamoLogRepository, LogTableLayout
from services.logging.adapters.postgres import LogPartitions, PostgresLogRepository
from services.logging.api import LoggingServicer
from services.logging.config import LoggingSettings
from services.logging.store import INDEX_READ_KINDS, HybridLogStore
from services.logging.use_cases import LogUseCases
from services.readiness import dynamodb_required

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

SERVICE_NAME = logging_pb2.DESCRIPTOR.services_by_name["LoggingService"].full_name
TABLE = "logs"


async def bootstrap(settings: LoggingSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    dsn = settings.postgres_dsn.get_secret_value()
    pool = await stack.enter_async_context(postgres_pool(settings))
    if settings.migrate_on_start:
        await schema.upgrade_to_head(dsn)
        await migration_schema.upgrade_to_head(dsn)
    partitions = LogPartitions(pool, settings.retention_days)
    created, dropped = await partitions.maintain()
    logger.info(
        "log partitions maintained", extra={"partitions_created": len(created), "partitions_dropped": len(dropped)}
    )
    _keep_maintaining(partitions, settings.partition_maintenance_seconds, stack)

    dynamodb = await stack.enter_async_context(dynamodb_client(settings))
    table_name = settings.table_name(TABLE)
    await provide_table(
        dynamodb,
        table_name,
        LOG_TABLE,
        create=settings.creates_tables(settings.environment),
        setting=f"{settings.model_config['env_prefix']}DYNAMODB_CREATE_TABLES",
    )

    hybrid, _ = await open_hybrid_table(
        TABLE, settings, dsn, pool, stack, who="logging-service", index_read_kinds=INDEX_READ_KINDS
    )
    layout = LogTableLayout(settings.dynamodb_shards, settings.retention)
    store = log_store(hybrid, pool, dynamodb, table_name, layout, settings.dynamo_batch_timeout_seconds, partitions)
    if settings.relay_enabled:
        start_relay(hybrid, store.replicate, stack)

    use_cases = LogUseCases(store, PageTokens(settings.page_token_secret_or_random(), "logging"), settings.retention)
    servicer = LoggingServicer(use_cases)
    add_servicer = logging_pb2_grpc.add_LoggingServiceServicer_to_server
    readiness = [
        postgres_readiness(pool),
        dynamodb_readiness(dynamodb, table_name, lambda: dynamodb_required(hybrid.mode)),
    ]
    return [ServiceBinding(SERVICE_NAME, lambda server: add_servicer(servicer, server), readiness)]


def log_store(
    hybrid: HybridTable,
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    table_name: str,
    layout: LogTableLayout,
    dynamo_batch_timeout: float,
    partitions: LogPartitions | None = None,
) -> HybridLogStore:
    """The service's store from opened parts (tests build theirs with it too). `partitions`: a day's partition is
    created on demand when a batch needs one that maintenance has not made yet."""
    return HybridLogStore(
        hybrid,
        postgres=PostgresLogRepository(pool),
        dynamo=DynamoLogRepository(dynamodb, table_name, layout),
        ensure_partitions=None if partitions is None else partitions.maintain,
        dynamo_batch_timeout=dynamo_batch_timeout,
    )


def _keep_maintaining(partitions: LogPartitions, interval: float, stack: AsyncExitStack) -> None:
    """Creates tomorrow's partitions and drops expired ones every `interval` seconds, from every replica
    (the work is idempotent and serialised by an advisory lock)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                created, dropped = await partitions.maintain()
            except Exception:  # PostgreSQL unreachable for now: the next round tries again
                logger.exception("log partition maintenance failed")
            else:
                if created or dropped:
                    logger.info(
                        "log partitions maintained",
                        extra={"partitions_created": len(created), "partitions_dropped": len(dropped)},
                    )

    task = asyncio.create_task(loop(), name="log-partition-maintenance")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
