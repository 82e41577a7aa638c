"""The watchdog on the real stores: DynamoDB frozen (or slowed) under reads in dynamo_live moves payments back to
shadow once, whichever of two replicas sees it, with every read answered and every write kept; off, or cooling down,
it waits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from chassis.errors import Unavailable
from migration.stages import Stage
from migration.watchdog import Watchdog, WatchdogSettings
from services.payment.domain import Payment
from tests.support.dynamodb import OwnDynamo
from tests.support.payment_harness import Harness, Replica
from tests.support.payments import T0, a_payment

FAST = WatchdogSettings(check_seconds=0.1, sustain_seconds=0.5, cool_down_seconds=600, min_reads=3)


@contextlib.asynccontextmanager
async def watching(harness: Harness, replica: Replica, settings: WatchdogSettings) -> AsyncIterator[Watchdog]:
    watchdog = Watchdog(replica.hybrid, harness.control, harness.pool, harness.postgres_dsn, settings)
    task = asyncio.create_task(watchdog.run())
    try:
        yield watchdog
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def automatic_changes(harness: Harness) -> list[tuple[str, str, str]]:
    rows = await harness.pool.fetch(
        """SELECT from_stage, to_stage, changed_by FROM migration.mode_changes
           WHERE table_name = 'payments' AND changed_by LIKE 'auto:%' ORDER BY id"""
    )
    return [(row["from_stage"], row["to_stage"], row["changed_by"]) for row in rows]


@pytest.fixture
async def fresh_audit(outage_harness: tuple[Harness, OwnDynamo]) -> tuple[Harness, OwnDynamo]:
    """No automatic rollback of payments before the test (the cool-down reads them), the watchdog on."""
    harness, dynamo = outage_harness
    await harness.pool.execute("DELETE FROM migration.mode_changes WHERE changed_by LIKE 'auto:%'")
    await harness.control.set_watchdog("payments", True, "test")
    return harness, dynamo


async def readers_and_writes(
    replicas: list[Replica], customer: uuid.UUID, seconds: float, reading: uuid.UUID | None = None
) -> tuple[int, list[Payment]]:
    """Every replica reading a customer's history (`reading`, else the writer's) and one writing the customer's
    payments, for `seconds`: failed reads, payments written."""
    failures, written = 0, []
    deadline = asyncio.get_running_loop().time() + seconds
    i = 0
    while asyncio.get_running_loop().time() < deadline:
        i += 1
        written.append(await replicas[0].store.create(a_payment(customer, paid_at=T0 + timedelta(minutes=i))))
        for replica in replicas:
            try:
                await replica.store.list_for_customer(reading or customer, None, None, None, 100)
            except Unavailable:
                failures += 1
        await asyncio.sleep(0.02)
    return failures, written


async def test_a_sustained_outage_moves_the_table_back_to_shadow_once_with_no_failed_read(
    fresh_audit: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = fresh_audit
    replicas = [await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=3) for _ in range(2)]
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    customer = a_payment().customer_id

    async with watching(harness, replicas[0], FAST) as first, watching(harness, replicas[1], FAST) as second:
        dynamo.freeze()
        try:
            failures, written = await readers_and_writes(replicas, customer, 3.0)
        finally:
            dynamo.thaw()

    assert await automatic_changes(harness) == [("dynamo_live", "shadow", "auto:fallback_ratio")]
    assert first.decisions + second.decisions == 1
    assert failures == 0
    assert (await harness.control.mode("payments")).stage is Stage.SHADOW
    for payment in written:  # acknowledged during the outage and the switch: in PostgreSQL, none lost
        assert await harness.in_postgres(payment) == payment
    reason = await harness.pool.fetchval(
        "SELECT reason FROM migration.mode_changes WHERE changed_by LIKE 'auto:%' ORDER BY id DESC LIMIT 1"
    )
    assert reason.startswith("watchdog: breached for 0.5 s: fallback_ratio ")


@contextlib.asynccontextmanager
async def slowed(dynamo: OwnDynamo, stopped: float, running: float) -> AsyncIterator[None]:
    """DynamoDB Local answering, but late: frozen `stopped` s out of every `stopped + running`, so some calls outlast
    their timeout and some do not."""

    async def duty_cycle() -> None:
        while True:
            dynamo.freeze()
            await asyncio.sleep(stopped)
            dynamo.thaw()
            await asyncio.sleep(running)

    task = asyncio.create_task(duty_cycle())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        dynamo.thaw()


async def test_a_slowed_dynamodb_moves_the_table_back_too_with_no_failed_read(
    fresh_audit: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = fresh_audit
    # A breaker that never opens: every read tries DynamoDB, and only the slow ones fall back.
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=1000)
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    customer, reader = a_payment().customer_id, a_payment().customer_id
    # The reader has a history wholly in DynamoDB (the relay finishes any copy a cold DynamoDB Local timed out), so
    # DynamoDB serves her reads: a key with a write in flight is read from PostgreSQL, which is no fallback.
    for i in range(3):
        await replica.store.create(a_payment(reader, paid_at=T0 + timedelta(days=1, minutes=i)))
    await replica.hybrid.wait_for_copies()
    await harness.pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = 'payments'")
    await replica.relay.drain()
    assert (await replica.hybrid.journal.backlog()).pending == 0

    # Checks long enough to span both phases of the cycle: each one judges a mix of slow and timely reads.
    settings = dataclasses.replace(FAST, check_seconds=0.5, sustain_seconds=1.0)
    async with watching(harness, replica, settings) as watchdog, slowed(dynamo, stopped=0.3, running=0.2):
        failures, written = await readers_and_writes([replica], customer, 4.0, reading=reader)

    assert await automatic_changes(harness) == [("dynamo_live", "shadow", "auto:fallback_ratio")]
    assert watchdog.decisions == 1
    assert 0 < replica.hybrid.dynamo_reads.fell_back < replica.hybrid.dynamo_reads.served  # slow, not dead
    assert failures == 0
    for payment in written:
        assert await harness.in_postgres(payment) == payment


async def test_turned_off_or_cooling_down_it_leaves_the_table_where_it_is(
    fresh_audit: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = fresh_audit
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=3)
    customer = a_payment().customer_id

    await harness.control.set_watchdog("payments", False, "test")
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    async with watching(harness, replica, FAST):
        dynamo.freeze()
        try:
            failures, _ = await readers_and_writes([replica], customer, 1.5)
        finally:
            dynamo.thaw()
    assert (await harness.control.mode("payments")).stage is Stage.DYNAMO_LIVE
    assert await automatic_changes(harness) == []

    # On again, it rolls back once; moved forward again within the cool-down, it waits.
    await harness.control.set_watchdog("payments", True, "test")
    for expected in (Stage.SHADOW, Stage.DYNAMO_LIVE):
        await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
        async with watching(harness, replica, FAST):
            dynamo.freeze()
            try:
                more, _ = await readers_and_writes([replica], customer, 1.5)
            finally:
                dynamo.thaw()
        failures += more
        assert (await harness.control.mode("payments")).stage is expected
    assert len(await automatic_changes(harness)) == 1
    assert failures == 0
