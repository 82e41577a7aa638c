"""Verify while payments are written and reversed, on real PostgreSQL and DynamoDB Local: a write in flight (its
journal entry not yet copied) is rechecked until it lands, never reported; a real difference still is."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from migration.hybrid import HybridSettings
from migration.journal import Journal
from migration.stages import Stage, TableMode
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import HybridPaymentStore, routing_keys
from tests.support.payments import a_payment
from tests.support.toolkit import Stores, insert_payments, payment_service_store, set_stage
from toolkit import verify
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.dynamo_io import batch_get
from toolkit.verify import VerifyOptions, run_verify

# Slower than the old fixed 0.2 s recheck, as inline copies were under the tester's load (up to ~425 ms at p99).
COPY_SECONDS = 0.6
# Each writer's pause after a payment and its reversal: 8 writers make about 30 writes/s, within what copies taking
# COPY_SECONDS each land (16 in the background, 8 through the relay), as when each writer waited for its copies.
WRITE_PACE_SECONDS = 0.5


class LoadedDynamo(DynamoPaymentRepository):
    """DynamoDB Local answering as a loaded DynamoDB does: every copy takes a while."""

    async def put_if_newer(self, payment: Payment) -> bool:
        await asyncio.sleep(COPY_SECONDS)
        return await super().put_if_newer(payment)


async def backfilled(stores: Stores, payments: int) -> list[Payment]:
    history = await insert_payments(stores.pool, payments)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    await run_backfill(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, BackfillOptions(workers=2)
    )
    return history


def reversed_(payment: Payment) -> Payment:
    return dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=payment.version + 1)


async def test_repeated_verifies_under_writes_and_reversals_report_no_difference(stores: Stores) -> None:
    await backfilled(stores, 300)
    mode = TableMode("payments", Stage.DUAL_WRITE, fallback=True)
    dynamo = LoadedDynamo(stores.dynamodb, stores.table_name("payments"))
    stop = asyncio.Event()

    async def writer(store: HybridPaymentStore) -> int:
        writes = 0
        while not stop.is_set():
            created = await store.create(a_payment())
            writes += 1 + await store.update(reversed_(created), expected_version=1)
            await asyncio.sleep(WRITE_PACE_SECONDS)
        return writes

    options = VerifyOptions(workers=2)
    async with payment_service_store(stores, mode, dynamo, HybridSettings(dynamo_timeout_seconds=5)) as store:
        writers = [asyncio.create_task(writer(store)) for _ in range(8)]
        try:
            verified = []
            for _ in range(4):
                verified += await run_verify(
                    stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, options
                )
        finally:
            stop.set()
            writes = await asyncio.gather(*writers)

    assert sum(writes) >= 16
    assert [(v.missing, v.extra, v.differing) for v in verified] == [(0, 0, 0)] * 4, [v.differences for v in verified]
    assert all(v.clean for v in verified)
    # The race was there: writes in flight made keys differ at first, and each was rechecked until it landed.
    assert sum(v.rechecked for v in verified) > 0


async def test_a_copy_slower_than_a_short_pause_is_not_reported_and_a_real_difference_is(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = await backfilled(stores, 200)
    in_flight, diverged = history[10], history[20]
    journal = Journal(stores.pool, "payments")
    # A reversal committed in PostgreSQL with its journal entry; its copy to DynamoDB is still to come.
    async with stores.pool.acquire() as connection, connection.transaction():
        assert await PostgresPaymentRepository(connection).update(reversed_(in_flight), expected_version=1)
        entry = await journal.append(connection, str(in_flight.id), 2, routing_keys(in_flight))
    # A real divergence: DynamoDB's item changed behind everyone's back, nothing journaled.
    await DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments")).put_if_newer(reversed_(diverged))
    dynamo = DynamoPaymentRepository(stores.dynamodb, stores.table_name("payments"))
    landed: list[asyncio.Task[None]] = []

    async def copy_lands() -> None:
        await dynamo.put_if_newer(reversed_(in_flight))
        await journal.complete([entry])

    async def recheck_read(*arguments: Any, **options: Any) -> Any:
        """The copy lands only after the recheck has read both stores once: later than any single re-read."""
        read = await batch_get(*arguments, **options)
        if not landed:
            landed.append(asyncio.create_task(copy_lands()))
        return read

    monkeypatch.setattr(verify, "batch_get", recheck_read)

    [summary] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    assert landed
    assert [(d.kind, d.key, d.fields) for d in summary.differences] == [
        ("differing", (str(diverged.id),), ("status", "version")),
    ]
    assert (summary.missing, summary.extra, summary.differing, summary.in_flight) == (0, 0, 1, 0)


async def test_a_write_still_in_flight_when_the_recheck_gives_up_is_not_a_difference(stores: Stores) -> None:
    history = await backfilled(stores, 50)
    stuck = history[5]
    async with stores.pool.acquire() as connection, connection.transaction():
        assert await PostgresPaymentRepository(connection).update(reversed_(stuck), expected_version=1)
        await Journal(stores.pool, "payments").append(connection, str(stuck.id), 2, routing_keys(stuck))

    [summary] = await run_verify(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, VerifyOptions(recheck_seconds=0.3)
    )

    assert summary.differences == []
    assert (summary.difference_count, summary.in_flight, summary.clean) == (0, 1, True)
