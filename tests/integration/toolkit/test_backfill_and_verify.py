"""Backfill and verify on real PostgreSQL and DynamoDB Local: complete, idempotent, never stale, repairable."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from chassis.errors import FailedPrecondition
from chassis.ids import new_id
from migration.hybrid import HybridSettings
from migration.stages import Stage, TableMode
from services.logging.adapters.dynamodb import LogTableLayout
from services.logging.domain import LogEntry, LogLevel
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import HybridPaymentStore
from tests.support.payments import a_payment
from tests.support.toolkit import (
    LOG_SHARDS,
    RETENTION,
    Stores,
    insert_logs,
    insert_payments,
    payment_service_store,
    set_stage,
)
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.verify import VerifyOptions, run_verify

PAYMENTS = 3000
LOGS = 4000
# Each writer's pause between writes: about what writers waiting for their DynamoDB copies managed, 80 writes/s in
# all, which DynamoDB Local absorbs beside the backfill (a flood would only measure its JVM on 2 cores).
WRITE_PACE_SECONDS = 0.05


async def test_a_backfill_copies_every_row_of_both_tables_and_verifies_clean(stores: Stores) -> None:
    await insert_payments(stores.pool, PAYMENTS)
    await insert_logs(stores.pool, LOGS)
    for table in ("payments", "logs"):
        await set_stage(stores.pool, table, Stage.DUAL_WRITE)

    summaries = await run_backfill(
        stores.pool, stores.dynamodb, stores.specs(), stores.table_name, BackfillOptions(workers=3, batch_rows=200)
    )
    verified = await run_verify(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)

    assert [(s.table, s.rows, s.items, s.rows_total) for s in summaries] == [
        ("payments", PAYMENTS, 2 * PAYMENTS, PAYMENTS),  # each payment and its idempotency marker
        ("logs", LOGS, LOGS, LOGS),
    ]
    assert len(await stores.dynamo_keys("payments")) == 2 * PAYMENTS
    assert len(await stores.dynamo_keys("logs")) == LOGS
    assert [(v.table, v.clean, v.full, v.rows_checked, v.items_scanned) for v in verified] == [
        ("payments", True, True, PAYMENTS, 2 * PAYMENTS),
        ("logs", True, True, LOGS, LOGS),
    ]
    recorded = await stores.pool.fetch(
        "SELECT table_name, clean, full_scan, rows_checked FROM migration.verifications ORDER BY table_name"
    )
    assert [tuple(row) for row in recorded] == [("logs", True, True, LOGS), ("payments", True, True, PAYMENTS)]


async def test_a_second_backfill_is_a_new_run_that_changes_nothing(stores: Stores) -> None:
    await insert_payments(stores.pool, 500)
    await set_stage(stores.pool, "payments", Stage.SHADOW)
    options = BackfillOptions(workers=2, batch_rows=100)

    first = await run_backfill(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, options)
    second = await run_backfill(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, options)
    [verified] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    assert second[0].run_id != first[0].run_id
    assert not second[0].resumed
    assert len(await stores.dynamo_keys("payments")) == 1000
    assert verified.clean


async def test_a_backfill_refuses_tables_that_are_not_dual_writing(stores: Stores) -> None:
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    await set_stage(stores.pool, "logs", Stage.POSTGRES_ONLY)

    with pytest.raises(
        FailedPrecondition,
        match=r"logs: backfill needs a stage that writes both stores .* "
        r"it is in postgres_only: switch first",
    ):
        await run_backfill(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)
    await set_stage(stores.pool, "logs", Stage.DYNAMO_ONLY)
    with pytest.raises(FailedPrecondition, match="PostgreSQL no longer receives writes"):
        await run_backfill(stores.pool, stores.dynamodb, stores.specs("logs"), stores.table_name)

    assert await stores.pool.fetchval("SELECT count(*) FROM migration.backfill_runs") == 0


async def test_live_inserts_and_status_changes_during_a_backfill_are_never_overwritten(stores: Stores) -> None:
    history = await insert_payments(stores.pool, PAYMENTS)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    dual_write = TableMode("payments", Stage.DUAL_WRITE, fallback=True)
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    latest: dict[object, Payment] = {payment.id: payment for payment in history}
    backfill_done = asyncio.Event()

    async def traffic(store: HybridPaymentStore, seed: int) -> int:
        """Status changes of historical payments (newer versions) and new payments, as the service makes them."""
        rng, writes = random.Random(seed), 0
        while not backfill_done.is_set() or writes < 50:
            if rng.random() < 0.25:
                created = await store.create(a_payment())
                latest[created.id] = created
            else:
                current = latest[rng.choice(history).id]
                changed = dataclasses.replace(
                    current,
                    status=rng.choice(list(PaymentStatus)),
                    version=current.version + 1,
                    updated_at=current.updated_at + timedelta(seconds=1),
                )
                if await store.update(changed, expected_version=current.version):
                    latest[changed.id] = changed
            writes += 1
            # A steady stream, not a flood: acknowledged before their copies, unpaced writers would outrun DynamoDB.
            await asyncio.sleep(WRITE_PACE_SECONDS)
        return writes

    async def backfill() -> None:
        try:
            await run_backfill(
                stores.pool,
                stores.dynamodb,
                stores.specs("payments"),
                stores.table_name,
                BackfillOptions(workers=4, batch_rows=50, write_concurrency=2),
            )
        finally:
            backfill_done.set()

    settings = HybridSettings(dynamo_timeout_seconds=2)
    async with payment_service_store(stores, dual_write, dynamo, settings) as store:
        backfilling = asyncio.create_task(backfill())
        writes = await asyncio.gather(*(traffic(store, seed) for seed in range(4)))
        await backfilling
    [verified] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    changed = {pid: p for pid, p in latest.items() if p.version > 1}
    assert sum(writes) >= 200
    assert len(changed) >= 50
    stale = [pid for pid, p in changed.items() if (await dynamo.get(p.id)) != p]
    assert stale == []
    assert (verified.clean, verified.rows_checked) == (True, len(latest))


async def test_verify_reports_a_deleted_an_altered_and_an_extra_item_and_repair_fixes_them(stores: Stores) -> None:
    payments = await insert_payments(stores.pool, 1000)
    await insert_logs(stores.pool, 1000)
    for table in ("payments", "logs"):
        await set_stage(stores.pool, table, Stage.DUAL_WRITE)
    await run_backfill(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)
    deleted, altered = payments[10], payments[20]
    client, payments_table = stores.dynamodb, stores.table_name("payments")
    await client.delete_item(TableName=payments_table, Key={"pk": {"S": str(deleted.id)}})
    await client.update_item(
        TableName=payments_table,
        Key={"pk": {"S": str(altered.id)}},
        UpdateExpression="SET #s = :s, amount_minor = :a",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "REVERSED"}, ":a": {"N": "1"}},
    )
    stray = a_payment()
    await DynamoPaymentRepository(client, payments_table).create(stray)  # an item and a marker with no row
    [log_key] = (await stores.dynamo_keys("logs"))[:1]
    await client.update_item(
        TableName=stores.table_name("logs"),
        Key={"pk": {"S": log_key[0]}, "sk": {"S": log_key[1]}},
        UpdateExpression="SET message = :m",
        ExpressionAttributeValues={":m": {"S": "tampered"}},
    )

    found = await run_verify(
        stores.pool, stores.dynamodb, stores.specs(), stores.table_name, VerifyOptions(repair=True)
    )
    again = await run_verify(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)

    payments_found, logs_found = found
    assert (payments_found.missing, payments_found.differing, payments_found.extra) == (1, 1, 2)
    assert {(d.kind, d.key, d.fields) for d in payments_found.differences} == {
        ("missing", (str(deleted.id),), ()),
        ("differing", (str(altered.id),), ("amount_minor", "status")),
        ("extra", (str(stray.id),), ()),
        ("extra", (f"IDEMPOTENCY#{stray.idempotency_key}",), ()),
    }
    assert [(d.kind, d.key, d.fields) for d in logs_found.differences] == [("differing", log_key, ("message",))]
    assert not payments_found.clean
    assert payments_found.repaired == 4
    assert logs_found.repaired == 1
    assert [(v.table, v.clean) for v in again] == [("payments", True), ("logs", True)]
    assert await DynamoPaymentRepository(client, payments_table).get(altered.id) == altered
    clean_flags = await stores.pool.fetch("SELECT clean FROM migration.verifications ORDER BY id")
    assert [row["clean"] for row in clean_flags] == [False, False, True, True]


async def test_a_sampled_verify_checks_part_of_the_table_and_is_recorded_as_not_full(stores: Stores) -> None:
    await insert_payments(stores.pool, 2000)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    await run_backfill(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    [sampled] = await run_verify(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, VerifyOptions(sample=0.25, workers=2)
    )

    assert sampled.clean
    assert not sampled.full
    assert 200 <= sampled.rows_checked <= 1000
    assert await stores.pool.fetchval("SELECT full_scan FROM migration.verifications") is False


async def test_a_clean_full_verify_rechecks_nothing_and_ignores_log_items_past_their_ttl(stores: Stores) -> None:
    await insert_payments(stores.pool, 300)
    await insert_logs(stores.pool, 300)
    for table in ("payments", "logs"):
        await set_stage(stores.pool, table, Stage.DUAL_WRITE)
    await run_backfill(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)
    expired = LogEntry(
        id=new_id(),
        time=datetime.now(UTC) - RETENTION - timedelta(days=2),
        service="payment",
        level=LogLevel.INFO,
        message="older than the retention",
        attributes={},
        trace_id="",
    )
    item = LogTableLayout(shards=LOG_SHARDS, retention=RETENTION).item(expired)
    await stores.dynamodb.put_item(TableName=stores.table_name("logs"), Item=item)  # not yet deleted by TTL

    verified = await run_verify(stores.pool, stores.dynamodb, stores.specs(), stores.table_name)

    # Both streams digest an item alike (the adapters' items and DynamoDB's wire JSON), so no key is re-read.
    assert [(v.table, v.clean, v.full, v.rechecked, v.items_checked, v.items_scanned) for v in verified] == [
        ("payments", True, True, 0, 600, 600),
        ("logs", True, True, 0, 300, 300),
    ]
