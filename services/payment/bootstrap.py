"""Composition root of the payment service: the only place its adapters are chosen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AsyncExitStack

from chassis.grpc_client import create_channel
from chassis.grpc_server import ServiceBinding
from chassis.page_tokens import PageTokens
from chassis.stores import dynamodb_client, postgres_pool
from loanbook.migration.v1 import migration_pb2, migration_pb2_grpc
from loanbook.payment.v1 import payment_pb2, payment_pb2_grpc
from migration import schema as migration_schema
from migration.api import MigrationServicer
from migration.control import ControlPlane, load_settings_file
from migration.hybrid import HybridSettings, HybridTable
from migration.journal import Journal
from migration.relay import Relay
from migration.watcher import ModeWatcher
from services.payment import migrations
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.api import PaymentServicer
from services.payment.config import PaymentSettings
from services.payment.loans import GrpcLoanDirectory
from services.payment.store import HybridPaymentStore
from services.payment.use_cases import PaymentUseCases

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
MIGRATION_SERVICE_NAME = migration_pb2.DESCRIPTOR.services_by_name["MigrationService"].full_name
TABLE = "payments"


async def bootstrap(settings: PaymentSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    dsn = settings.postgres_dsn.get_secret_value()
    pool = await stack.enter_async_context(postgres_pool(settings))
    if settings.migrate_on_start:
        await migrations.upgrade_to_head(dsn)
        await migration_schema.upgrade_to_head(dsn)
    dynamodb = await stack.enter_async_context(dynamodb_client(settings))
    table_name = f"{settings.dynamodb_table_prefix}-payments"
    await ensure_payment_table(dynamodb, table_name)

    control = ControlPlane(pool)
    if settings.migration_settings_file is not None:
        modes = load_settings_file(settings.migration_settings_file)
        await control.seed({t: m for t, m in modes.items() if t == TABLE}, who="payment-service settings file")
    await control.ensure_defaults(who="payment-service start-up")
    watcher = ModeWatcher(dsn, control, poll_interval=settings.mode_poll_seconds)
    await watcher.start()
    stack.push_async_callback(watcher.stop)

    hybrid = HybridTable(
        TABLE,
        lambda: watcher.mode(TABLE),
        pool,
        Journal(pool, TABLE),
        HybridSettings(
            dynamo_timeout_seconds=settings.dynamo_timeout_seconds,
            breaker_failure_threshold=settings.breaker_failure_threshold,
            breaker_recovery_seconds=settings.breaker_recovery_seconds,
            shadow_sample_ratio=settings.shadow_sample_ratio,
            shadow_budget_seconds=settings.shadow_budget_seconds,
        ),
    )
    stack.push_async_callback(hybrid.wait_for_shadow_reads)
    store = HybridPaymentStore(
        hybrid,
        postgres=PostgresPaymentRepository(pool),
        postgres_on=PostgresPaymentRepository,
        dynamo=DynamoPaymentRepository(dynamodb, table_name),
    )
    if settings.relay_enabled:
        relay = asyncio.create_task(Relay(hybrid.journal, store.replicate).run(), name="payments-relay")

        async def stop_relay() -> None:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

        stack.push_async_callback(stop_relay)

    customer_channel = create_channel(settings.customer_addr, settings)
    stack.push_async_callback(customer_channel.close)
    use_cases = PaymentUseCases(
        store,
        GrpcLoanDirectory(customer_channel, settings.customer_deadline_seconds),
        PageTokens(settings.page_token_secret_or_random(), "payment"),
    )
    servicer = PaymentServicer(use_cases)
    add_servicer = payment_pb2_grpc.add_PaymentServiceServicer_to_server
    # The payment service holds the control plane's connection, so it serves the admins' migration API too.
    migration_servicer = MigrationServicer(control, lambda table: Journal(pool, table))
    add_migration = migration_pb2_grpc.add_MigrationServiceServicer_to_server
    return [
        ServiceBinding(SERVICE_NAME, lambda server: add_servicer(servicer, server)),
        ServiceBinding(MIGRATION_SERVICE_NAME, lambda server: add_migration(migration_servicer, server)),
    ]
