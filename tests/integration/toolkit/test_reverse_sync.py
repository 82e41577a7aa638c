"""The way back from dynamo_only on real PostgreSQL and DynamoDB Local: what only DynamoDB holds is copied back into
PostgreSQL, a newer PostgreSQL version is never replaced, and PostgreSQL answers no read until that is verified."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from chassis.errors import FailedPrecondition
from chassis.ids import new_id
from migration.stages import Stage, TableMode
from services.logging.adapters.dynamodb import DynamoLogRepository, LogTableLayout
from services.logging.adapters.postgres import PostgresLogRepository
from services.logging.domain import LogBatch, LogEntry, LogLevel
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.domain import PaymentStatus
from tests.support.payments import a_payment
from tests.support.toolkit import LOG_SHARDS, RETENTION, Stores, migrated_to_dynamo_only, payment_service_store
from toolkit.reverse_sync import ReverseSyncOptions, rollback_out_of_dynamo_only, run_reverse_sync
from toolkit.verify import VerifyOptions, run_verify

NOW = datetime.now(UTC)
NO_SETTLE = ReverseSyncOptions(segments=4, page_items=50, settle_seconds=0)


def log_entries(count: int, service: str = "dynamo-era") -> list[LogEntry]:
    return [
        LogEntry(
            id=new_id(),
            time=NOW - timedelta(seconds=n),
            service=service,
            level=LogLevel.INFO,
            message=f"written in dynamo_only {n}",
            attributes={"n": str(n)},
            trace_id=secrets.token_hex(16),
        )
        for n in range(count)
    ]


async def test_rollback_out_of_dynamo_only_copies_back_what_only_dynamodb_holds(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores)
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    postgres = PostgresPaymentRepository(stores.pool)
    # In dynamo_only: new payments, a historical payment reversed, log entries, all in DynamoDB alone.
    new = [await dynamo.create(a_payment(paid_at=NOW - timedelta(minutes=n))) for n in range(30)]
    historical = await postgres.get(await stores.pool.fetchval("SELECT id FROM payment.payments LIMIT 1"))
    assert historical is not None
    reversed_payment = dataclasses.replace(historical, status=PaymentStatus.REVERSED, version=2)
    assert await dynamo.update(reversed_payment, expected_version=1)
    entries = log_entries(120)
    logs = DynamoLogRepository(stores.dynamodb, stores.table_name("logs"), LogTableLayout(LOG_SHARDS, RETENTION))
    await logs.write(LogBatch(new_id(), entries))
    # Nothing earlier than dynamo_primary with fallback off is allowed straight out of dynamo_only.
    for stage, fallback in ((Stage.SHADOW, True), (Stage.DYNAMO_PRIMARY, True)):
        with pytest.raises(FailedPrecondition, match="dynamo_primary with fallback off first"):
            await control.change("payments", stage=stage, fallback=fallback, who="test")

    ways = await rollback_out_of_dynamo_only(
        stores.pool,
        stores.dynamodb,
        stores.specs(),
        stores.table_name,
        who="oncall",
        options=NO_SETTLE,
        verify_options=VerifyOptions(workers=2),
    )

    assert [(w.table, w.from_stage, w.stage, w.fallback, w.complete) for w in ways] == [
        ("payments", Stage.DYNAMO_ONLY, Stage.DYNAMO_PRIMARY, True, True),
        ("logs", Stage.DYNAMO_ONLY, Stage.DYNAMO_PRIMARY, True, True),
    ]
    payments_sync, logs_sync = (way.sync for way in ways)
    assert payments_sync is not None
    assert logs_sync is not None
    assert (payments_sync.inserted, payments_sync.updated, payments_sync.kept) == (30, 1, 199)
    assert payments_sync.skipped == 230  # the idempotency markers
    assert (logs_sync.inserted, logs_sync.kept) == (120, 300)
    assert [await postgres.get(payment.id) for payment in new] == new
    assert await postgres.get(historical.id) == reversed_payment
    stored = await PostgresLogRepository(stores.pool).query(
        "dynamo-era", NOW - timedelta(hours=1), NOW + timedelta(seconds=1), LogLevel.DEBUG, None, 1000
    )
    assert {entry.id for entry in stored} == {entry.id for entry in entries}
    assert all(way.verification is not None and way.verification.clean for way in ways)
    # Verified: the usual rollback steps are allowed again, down to postgres_only.
    for stage in (Stage.SHADOW, Stage.DUAL_WRITE, Stage.POSTGRES_ONLY):
        assert (await control.change("payments", stage=stage, who="test")).stage is stage
    audit = await stores.pool.fetch(
        "SELECT from_stage, to_stage, to_fallback FROM migration.mode_changes WHERE table_name = 'logs' "
        "AND changed_by = 'oncall' ORDER BY id"
    )
    assert [(r["from_stage"], r["to_stage"], r["to_fallback"]) for r in audit] == [
        ("dynamo_only", "dynamo_primary", False),
        ("dynamo_primary", "dynamo_primary", True),
    ]


async def test_until_the_reverse_sync_is_verified_postgres_answers_no_read(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores, payments=20, logs=0)
    await control.change("payments", stage=Stage.DYNAMO_PRIMARY, fallback=False, who="test")

    with pytest.raises(FailedPrecondition, match="reverse-sync payments"):
        await control.change("payments", stage=Stage.SHADOW, who="test")
    with pytest.raises(FailedPrecondition, match="reverse-sync payments"):
        await control.change("payments", fallback=True, who="test")
    [summary] = await run_reverse_sync(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, NO_SETTLE
    )
    assert summary.clean
    assert summary.covers_change is not None
    with pytest.raises(FailedPrecondition, match="clean full verification that starts after it"):
        await control.change("payments", stage=Stage.SHADOW, who="test")
    await run_verify(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, VerifyOptions(sample=0.5)
    )
    with pytest.raises(FailedPrecondition, match="clean full verification"):
        await control.change("payments", stage=Stage.SHADOW, who="test")
    await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    assert (await control.change("payments", stage=Stage.SHADOW, who="test")).stage is Stage.SHADOW
    # Settled for good: a later verification with differences (DynamoDB lagging) does not hold a rollback back.
    await stores.pool.execute("""INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked,
                                 differences, started_at) VALUES ('payments', true, false, 1, 1, now())""")
    assert (await control.change("payments", stage=Stage.POSTGRES_ONLY, who="test")).stage is Stage.POSTGRES_ONLY


async def test_the_reverse_sync_never_replaces_a_newer_postgres_version(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores, payments=10, logs=0)
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    postgres = PostgresPaymentRepository(stores.pool)
    payment = await dynamo.create(a_payment(paid_at=NOW))  # dynamo_only: DynamoDB alone, version 1
    await control.change("payments", stage=Stage.DYNAMO_PRIMARY, fallback=False, who="test")
    # A live write in dynamo_primary reaches PostgreSQL with version 2 before its copy reaches DynamoDB.
    newer = dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=2)
    assert await postgres.put_if_newer(newer)

    [summary] = await run_reverse_sync(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, NO_SETTLE
    )

    assert await postgres.get(payment.id) == newer
    assert (summary.inserted, summary.updated, summary.kept) == (0, 0, 11)
    # Re-running is harmless: nothing newer in DynamoDB, nothing changes.
    [again] = await run_reverse_sync(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, NO_SETTLE
    )
    assert (again.inserted, again.updated, again.kept) == (0, 0, 11)


async def test_a_reverse_sync_is_refused_while_postgres_receives_no_writes(stores: Stores) -> None:
    await migrated_to_dynamo_only(stores, payments=5, logs=0)

    with pytest.raises(FailedPrecondition, match="in dynamo_only PostgreSQL receives no writes"):
        await run_reverse_sync(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, NO_SETTLE)


async def test_on_the_way_back_an_update_of_a_payment_only_dynamodb_holds_succeeds(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores, payments=5, logs=0)
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    postgres = PostgresPaymentRepository(stores.pool)
    payment = await dynamo.create(a_payment(paid_at=NOW))
    await control.change("payments", stage=Stage.DYNAMO_PRIMARY, fallback=False, who="test")
    mode = await control.mode("payments")
    reversed_payment = dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=2)

    async with payment_service_store(stores, mode, dynamo) as store:
        assert await store.update(reversed_payment, expected_version=1)
        assert not await store.update(dataclasses.replace(reversed_payment, version=3), expected_version=1)  # stale

    assert await postgres.get(payment.id) == reversed_payment
    assert await dynamo.get(payment.id) == reversed_payment
    assert TableMode("payments", Stage.DYNAMO_PRIMARY, False).policy.writes_postgres
