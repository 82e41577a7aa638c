"""The switch to dynamo_only under live writes on real PostgreSQL and DynamoDB Local: it waits for the journal."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest

from chassis.errors import FailedPrecondition
from migration.control import ControlPlane, require_drained_journal
from migration.relay import Relay
from migration.stages import Stage
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import HybridPaymentStore
from tests.support.payment_harness import TABLE, Harness
from tests.support.payments import a_payment

# An inline copy under the tester's load took up to ~425 ms (p99); 0.1 s each keeps every writer's entry pending
# most of the time, as steady traffic does.
COPY_SECONDS = 0.1


class LoadedDynamo(DynamoPaymentRepository):
    """DynamoDB Local answering as a loaded DynamoDB does: every copy takes a while."""

    async def put_if_newer(self, payment: Payment) -> bool:
        await asyncio.sleep(COPY_SECONDS)
        return await super().put_if_newer(payment)


def only_the_journal_guard(harness: Harness) -> ControlPlane:
    """The guard under test alone (the verification guards have their own tests in test_migration_control)."""
    return ControlPlane(harness.pool, guards=(require_drained_journal,))


async def test_the_switch_to_dynamo_only_succeeds_under_steady_writes(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=False)
    store = HybridPaymentStore(
        replica.hybrid,
        harness.postgres,
        PostgresPaymentRepository,
        LoadedDynamo(harness.dynamo_client, harness.table_name),
    )
    acknowledged: dict[object, Payment] = {}
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            created = await store.create(a_payment())
            acknowledged[created.id] = created
            reversed_payment = dataclasses.replace(created, status=PaymentStatus.REVERSED, version=2)
            if await store.update(reversed_payment, expected_version=1):
                acknowledged[created.id] = reversed_payment
            # Steady, not flat out: the acknowledgement does not wait for the copy, so without a pace four writers
            # would outrun the loaded DynamoDB and no journal could drain (the switch rightly refuses then).
            await asyncio.sleep(COPY_SECONDS)

    writers = [asyncio.create_task(writer()) for _ in range(4)]
    # As in a service replica: an inline copy that misses its budget on a busy machine is the relay's to finish.
    relay = asyncio.create_task(Relay(replica.hybrid.journal, store.replicate, idle_seconds=0.05).run())
    said: list[str] = []
    try:
        async with asyncio.timeout(10):
            while not (await replica.hybrid.journal.backlog()).pending:
                await asyncio.sleep(0.01)
        switched = await only_the_journal_guard(harness).change(
            TABLE, stage=Stage.DYNAMO_ONLY, who="test", drain_seconds=5, waiting=said.append
        )
        stop.set()
        await asyncio.gather(*writers)
        # Nothing acknowledged is missing from DynamoDB once the writes in flight at the switch are copied (by their
        # own copy, or by the running relay: one cancelled mid-batch would hold its entries for a lease).
        await replica.hybrid.wait_for_copies()
        async with asyncio.timeout(10):
            while (await replica.hybrid.journal.backlog()).pending:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*writers)
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)

    assert switched.stage is Stage.DYNAMO_ONLY
    assert len(acknowledged) >= 4
    assert all(message.startswith("payments: waiting up to 5 s for ") for message in said)
    assert [await harness.dynamo.get(p.id) for p in acknowledged.values()] == list(acknowledged.values())


async def test_a_journal_that_does_not_drain_is_refused_after_the_wait(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=False)
    payment = await harness.postgres.create(a_payment())
    await replica.hybrid.journal.append(harness.pool, str(payment.id), 1, [f"payment:{payment.id}"])

    async def failing_copy(key: str) -> None:
        raise OSError("DynamoDB refuses this copy")

    relay = asyncio.create_task(Relay(replica.hybrid.journal, failing_copy, idle_seconds=0.05).run())
    try:
        with pytest.raises(FailedPrecondition) as refused:
            await only_the_journal_guard(harness).change(TABLE, stage=Stage.DYNAMO_ONLY, who="test", drain_seconds=1)
    finally:
        relay.cancel()

    message = " ".join(str(refused.value).split())
    assert "payments: 1 journaled writes are not in DynamoDB yet" in message
    waited = re.search(r"after waiting (\d+\.\d) s for the journal to drain", message)
    assert waited is not None, message
    assert float(waited.group(1)) >= 1.0
    assert (await harness.control.mode(TABLE)).stage is Stage.DYNAMO_PRIMARY
