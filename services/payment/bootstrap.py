"""Composition root of the payment service: the only place its adapters are chosen."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import asyncpg

from chassis.dynamodb_tables import provide_table
from chassis.grpc_client import create_channel
from chassis.grpc_server import ServiceBinding
from chassis.page_tokens import PageTokens
from chassis.stores import dynamodb_client, dynamodb_readiness, postgres_pool, postgres_readiness
from loanbook.migration.v1 import migration_pb2, migration_pb2_grpc
from loanbook.payment.v1 import payment_pb2, payment_pb2_grpc
from migration import schema as migration_schema
from migration.api import MigrationServicer
from migration.hybrid import HybridTable
from migration.journal import Journal
from migration.runtime import open_hybrid_table, start_relay
from services.payment import schema
from services.payment.adapters.dynamodb import PAYMENT_TABLE, DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.api import PaymentServicer
from services.payment.config import PaymentSettings
from services.payment.loans import GrpcLoanDirectory
from services.payment.store import INDEX_READ_KINDS, HybridPaymentStore
from services.payment.use_cases import PaymentUseCases
from services.readiness import dynamodb_required

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
MIGRATION_SERVICE_NAME = migration_pb2.DESCRIPTOR.services_by_name["MigrationService"].full_name
TABLE = "payments"


async def bootstrap(settings: PaymentSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    dsn = settings.postgres_dsn.get_secret_value()
    pool = await stack.enter_async_context(postgres_pool(settings))
    if settings.migrate_on_start:
        await schema.upgrade_to_head(dsn)
        await migration_schema.upgrade_to_head(dsn)
    dynamodb = await stack.enter_async_context(dynamodb_client(settings))
    table_name = settings.table_name(TABLE)
    await provide_table(
        dynamodb,
        table_name,
        PAYMENT_TABLE,
        create=settings.creates_tables(settings.environment),
        setting=f"{settings.model_config['env_prefix']}DYNAMODB_CREATE_TABLES",
    )

    hybrid, control = await open_hybrid_table(
        TABLE, settings, dsn, pool, stack, who="payment-service", index_read_kinds=INDEX_READ_KINDS
    )
    store = payment_store(hybrid, pool, dynamodb, table_name)
    if settings.relay_enabled:
        start_relay(hybrid, store.replicate, stack)

    customer_channel = create_channel(settings.customer_addr, settings)
    stack.push_async_callback(customer_channel.close)
    use_cases = PaymentUseCases(
        store,
        GrpcLoanDirectory(customer_channel, settings.customer_deadline_seconds),
        PageTokens(settings.page_token_secret_or_random(), "payment"),
    )
    servicer = PaymentServicer(use_cases)
    add_servicer = payment_pb2_grpc.add_PaymentServiceServicer_to_server
    # The payment service holds the control plane's connection, so it serves the admins' migration API too: every
    # migrated table is listed and switchable from its start, whether or not its own service has started yet.
    await control.ensure_defaults(who="payment start-up")
    migration_servicer = MigrationServicer(control, lambda table: Journal(pool, table))
    add_migration = migration_pb2_grpc.add_MigrationServiceServicer_to_server
    postgres = postgres_readiness(pool)
    dynamo = dynamodb_readiness(dynamodb, table_name, lambda: dynamodb_required(hybrid.mode))
    return [
        ServiceBinding(SERVICE_NAME, lambda server: add_servicer(servicer, server), [postgres, dynamo]),
        # The control plane lives in PostgreSQL alone.
        ServiceBinding(MIGRATION_SERVICE_NAME, lambda server: add_migration(migration_servicer, server), [postgres]),
    ]


def payment_store(
    hybrid: HybridTable, pool: asyncpg.Pool, dynamodb: DynamoDBClient, table_name: str
) -> HybridPaymentStore:
    """The service's store from opened parts (tests build theirs with it too)."""
    return HybridPaymentStore(
        hybrid,
        postgres=PostgresPaymentRepository(pool),
        postgres_on=PostgresPaymentRepository,
        dynamo=DynamoPaymentRepository(dynamodb, table_name),
    )
