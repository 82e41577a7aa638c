"""Incremental verification on real PostgreSQL and DynamoDB Local: after a clean full verification only the keys
written since are compared (from the key history), a tampered one among them is caught, a clean chain satisfies the
guards of a cutover, and a chain broken by dropped key history (or a spell without it) makes them demand a full one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from chassis.errors import FailedPrecondition
from chassis.ids import new_id
from migration.control import ControlPlane
from migration.hybrid import HybridSettings, HybridTable
from migration.journal import Journal
from migration.runtime import forget_old_history
from migration.stages import Stage, TableMode
from services.logging.adapters.dynamodb import DynamoLogRepository
from services.logging.adapters.postgres import PostgresLogRepository
from services.logging.domain import LogBatch, LogEntry, LogLevel
from services.logging.store import HybridLogStore
from services.logging.table_spec import LogSpec
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import HybridPaymentStore
from tests.support.payments import a_payment
from tests.support.toolkit import Stores, insert_logs, insert_payments, payment_service_store
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.verify import VerifyOptions, VerifySummary, run_verify

INCREMENTAL = VerifyOptions(incremental=True, workers=2)


async def verified_in_full(stores: Stores, table: str = "payments") -> VerifySummary:
    [summary] = await run_verify(stores.pool, stores.dynamodb, stores.specs(table), stores.table_name)
    assert (summary.clean, summary.full) == (True, True), summary.differences
    return summary


async def incremental(stores: Stores, table: str = "payments") -> VerifySummary:
    [summary] = await run_verify(stores.pool, stores.dynamodb, stores.specs(table), stores.table_name, INCREMENTAL)
    return summary


async def migrating(stores: Stores, payments: int = 300) -> ControlPlane:
    """History in PostgreSQL, payments in dual_write, backfilled (through the control plane and its guards)."""
    await insert_payments(stores.pool, payments)
    control = ControlPlane(stores.pool)
    await control.ensure_defaults(who="test", tables=["payments"])
    await control.change("payments", stage=Stage.DUAL_WRITE, who="test")
    await run_backfill(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, BackfillOptions(workers=2)
    )
    return control


@contextlib.asynccontextmanager
async def payment_writes(stores: Stores, stage: Stage) -> AsyncIterator[HybridPaymentStore]:
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    async with payment_service_store(stores, TableMode("payments", stage, fallback=True), dynamo) as store:
        yield store


def reversed_(payment: Payment) -> Payment:
    return dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=payment.version + 1)


async def tamper(stores: Stores, payment: Payment) -> None:
    """DynamoDB's item of a payment changed behind everyone's back: another amount, nothing journaled."""
    await stores.dynamodb.update_item(
        TableName=stores.table_name("payments"),
        Key={"pk": {"S": str(payment.id)}},
        UpdateExpression="SET #amount = :amount",
        ExpressionAttributeNames={"#amount": "amount_minor"},
        ExpressionAttributeValues={":amount": {"N": "1"}},
    )


async def test_an_incremental_verification_compares_the_keys_written_since_and_catches_a_tampered_one(
    stores: Stores,
) -> None:
    await migrating(stores)
    old = await stores.pool.fetch("SELECT id FROM payment.payments ORDER BY id LIMIT 10")
    full = await verified_in_full(stores)
    async with payment_writes(stores, Stage.DUAL_WRITE) as store:
        created = [await store.create(a_payment()) for _ in range(40)]
        for payment in created[:10]:  # a key written twice is compared once
            assert await store.update(reversed_(payment), expected_version=1)

    first = await incremental(stores)

    assert (first.clean, first.incremental, first.full, first.follows) == (True, True, False, full.verification_id)
    assert (first.keys_checked, first.rows_checked, first.items_checked) == (40, 40, 80)  # payment and marker items
    # What it covered is dropped from the key history: the next one starts after it.
    assert await stores.pool.fetchval("SELECT count(*) FROM migration.key_history") == 0

    async with payment_writes(stores, Stage.DUAL_WRITE) as store:
        later = [await store.create(a_payment()) for _ in range(5)]
    await tamper(stores, later[3])
    # An old payment tampered with too: no write names it, so only a full verification looks at it.
    untouched = str(old[0]["id"])
    await stores.dynamodb.update_item(
        TableName=stores.table_name("payments"),
        Key={"pk": {"S": untouched}},
        UpdateExpression="SET #amount = :amount",
        ExpressionAttributeNames={"#amount": "amount_minor"},
        ExpressionAttributeValues={":amount": {"N": "2"}},
    )

    second = await incremental(stores)

    assert (second.follows, second.keys_checked) == (first.verification_id, 5)
    assert [(d.kind, d.key, d.fields) for d in second.differences] == [
        ("differing", (str(later[3].id),), ("amount_minor",))
    ]
    recorded = await stores.pool.fetchrow("SELECT * FROM migration.verifications WHERE id = $1", second.verification_id)
    assert recorded is not None
    assert (recorded["incremental"], recorded["clean"], recorded["follows"]) == (True, False, first.verification_id)
    # Differences found: something changed DynamoDB outside the journal, and only a full verification says how far.
    with pytest.raises(FailedPrecondition, match=rf"verification {second.verification_id} found differences"):
        await incremental(stores)
    [full_again] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)
    assert sorted(d.key for d in full_again.differences) == sorted([(str(later[3].id),), (untouched,)])


async def test_a_clean_incremental_chain_satisfies_the_cutover_guards(stores: Stores) -> None:
    control = await migrating(stores)
    await verified_in_full(stores)
    for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY):
        await control.change("payments", stage=stage, who="test")
    async with payment_writes(stores, Stage.DYNAMO_PRIMARY) as store:
        for _ in range(20):
            await store.create(a_payment())
    first = await incremental(stores)
    async with payment_writes(stores, Stage.DYNAMO_PRIMARY) as store:
        for _ in range(7):
            await store.create(a_payment())
    second = await incremental(stores)
    assert (first.keys_checked, second.keys_checked, second.follows) == (20, 7, first.verification_id)
    assert (first.clean, second.clean) == (True, True)

    moved = await control.change("payments", stage=Stage.DYNAMO_ONLY, who="test")

    assert moved.stage is Stage.DYNAMO_ONLY


async def test_dropped_key_history_breaks_the_chain_and_the_guards_demand_a_full_verification(
    stores: Stores,
) -> None:
    control = await migrating(stores)
    full = await verified_in_full(stores)
    for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY):
        await control.change("payments", stage=stage, who="test")
    async with payment_writes(stores, Stage.DYNAMO_PRIMARY) as store:
        for _ in range(12):
            await store.create(a_payment())
    assert (await incremental(stores)).clean
    async with payment_writes(stores, Stage.DYNAMO_PRIMARY) as store:
        for _ in range(6):
            await store.create(a_payment())
    # Those six writes' key history goes before any verification covered it: a replica's trimming, as if they had
    # outlived the retention.
    trimming = asyncio.create_task(forget_old_history(Journal(stores.pool, "payments"), timedelta(0), 3600))
    try:
        async with asyncio.timeout(10):
            while not await stores.pool.fetchval("SELECT count(*) FROM migration.key_history_gaps"):
                await asyncio.sleep(0.05)
    finally:
        trimming.cancel()
    assert await stores.pool.fetchval("SELECT rows FROM migration.key_history_gaps") == 6
    assert await stores.pool.fetchval("SELECT count(*) FROM migration.key_history") == 0

    broken = r"the key history of 6 writes \(.+\) was dropped at .+ before a verification covered it"
    with pytest.raises(FailedPrecondition, match=r"payments: the incremental chain is broken: " + broken):
        await incremental(stores)
    # The clean incremental verification recorded before the gap no longer stands for a full one either.
    with pytest.raises(FailedPrecondition, match=r"needs a clean full verification first.+chain is broken"):
        await control.change("payments", stage=Stage.DYNAMO_ONLY, who="test")
    assert (await control.mode("payments")).stage is Stage.DYNAMO_PRIMARY

    again = await verified_in_full(stores)
    assert again.verification_id > full.verification_id
    assert (await incremental(stores)).keys_checked == 0  # a new chain, nothing written since
    assert (await control.change("payments", stage=Stage.DYNAMO_ONLY, who="test")).stage is Stage.DYNAMO_ONLY


async def test_a_spell_in_postgres_only_breaks_the_chain(stores: Stores) -> None:
    control = await migrating(stores)
    await verified_in_full(stores)
    # Writes in postgres_only are not journaled, so they leave no key history.
    await control.change("payments", stage=Stage.POSTGRES_ONLY, who="test")
    await control.change("payments", stage=Stage.DUAL_WRITE, who="test")

    with pytest.raises(FailedPrecondition, match=r"chain is broken: the table was in postgres_only from .+ journaled"):
        await incremental(stores)


async def test_an_incremental_verification_needs_a_full_one_with_a_snapshot_to_build_on(stores: Stores) -> None:
    await migrating(stores)
    with pytest.raises(FailedPrecondition, match=r"builds on a clean full one: none yet"):
        await incremental(stores)
    [sampled] = await run_verify(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, VerifyOptions(sample=0.5)
    )
    assert sampled.clean
    with pytest.raises(FailedPrecondition, match=r"none yet"):  # a sampled one vouches for no key
        await incremental(stores)


async def test_an_incremental_verification_of_logs_compares_the_batches_written_since(stores: Stores) -> None:
    await insert_logs(stores.pool, 120)
    control = ControlPlane(stores.pool)
    await control.ensure_defaults(who="test", tables=["logs"])
    await control.change("logs", stage=Stage.DUAL_WRITE, who="test")
    await run_backfill(stores.pool, stores.dynamodb, stores.specs("logs"), stores.table_name)
    await verified_in_full(stores, "logs")
    [spec] = stores.specs("logs")
    assert isinstance(spec, LogSpec)
    dynamo = DynamoLogRepository(stores.dynamodb, stores.table_name("logs"), spec.layout)
    hybrid = HybridTable(
        "logs",
        lambda: TableMode("logs", Stage.DUAL_WRITE, fallback=True),
        stores.pool,
        Journal(stores.pool, "logs"),
        HybridSettings(await_dynamodb_copy=True),
    )
    store = HybridLogStore(hybrid, PostgresLogRepository(stores.pool), dynamo)
    now = datetime.now(UTC)
    batches = [
        LogBatch(
            new_id(),
            [
                LogEntry(new_id(), now, "payment", LogLevel.INFO, f"event {secrets.token_hex(4)}", {}, "")
                for _ in range(3)
            ],
        )
        for _ in range(4)
    ]
    for batch in batches:
        assert await store.write(batch) == 3

    summary = await incremental(stores, "logs")

    assert (summary.clean, summary.keys_checked, summary.rows_checked, summary.items_checked) == (True, 4, 12, 12)
