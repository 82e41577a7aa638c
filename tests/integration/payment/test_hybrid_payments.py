"""The six stages at run time on real PostgreSQL and DynamoDB Local: where writes land, where reads are served,
read-your-writes, shadow comparison, fallback during an outage, relay crashes, live stage changes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chassis.errors import Unavailable, VersionConflict
from chassis.money import Money, MoneyInput
from chassis.page_tokens import PageTokens
from migration.stages import POLICIES, Backend, Stage
from services.payment.domain import Payment, PaymentStatus
from services.payment.loans import LoanStanding
from services.payment.store import idempotency_mismatch_key
from services.payment.use_cases import PaymentUseCases, RecordPayment
from tests.support.dynamodb import OwnDynamo
from tests.support.payment_harness import Harness, Replica
from tests.support.payments import T0, a_payment


@pytest.mark.parametrize("stage", list(Stage))
async def test_writes_land_where_the_stage_says(harness: Harness, stage: Stage) -> None:
    replica = await harness.replica()
    await harness.set_stage(stage)
    policy = POLICIES[stage]

    created = await replica.store.create(payment := a_payment())
    reversed_payment = dataclasses.replace(created, status=PaymentStatus.REVERSED, version=2)
    assert await replica.store.update(reversed_payment, expected_version=1)
    await replica.hybrid.wait_for_copies()  # the acknowledgement does not wait for the DynamoDB copy

    assert (await harness.in_postgres(payment) == reversed_payment) is policy.writes_postgres
    assert (await harness.in_dynamo(payment) == reversed_payment) is policy.writes_dynamo
    # A copy that succeeded leaves nothing for the relay.
    assert not await replica.hybrid.journal.has_pending([f"payment:{payment.id}"])


@pytest.mark.parametrize("stage", list(Stage))
async def test_reads_are_served_where_the_stage_says(harness: Harness, stage: Stage) -> None:
    replica = await harness.replica()
    await harness.set_stage(stage)
    payment = a_payment()
    # Make the stores disagree on purpose, so the answer shows which one served it.
    await harness.postgres.put_if_newer(dataclasses.replace(payment, method=payment.method, version=1))
    in_dynamo = dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=1)
    await harness.dynamo.put_if_newer(in_dynamo)

    served = await replica.store.get(payment.id)
    history = await replica.store.list_for_customer(payment.customer_id, None, None, None, 10)
    await replica.hybrid.wait_for_shadow_reads()

    expected = in_dynamo if POLICIES[stage].serves is Backend.DYNAMODB else payment
    assert served == expected
    assert history == [expected]
    compared = POLICIES[stage].compares
    assert (replica.hybrid.shadow.mismatched >= 2) is compared
    if compared:
        assert (str(payment.id), ["status"]) in replica.hybrid.shadow.mismatches
        recorded = await harness.pool.fetchval(
            "SELECT fields FROM migration.shadow_mismatches WHERE item_key = $1 ORDER BY id DESC LIMIT 1",
            str(payment.id),
        )
        assert recorded == ["status"]


async def test_a_mismatch_found_by_idempotency_key_is_recorded_and_logged_without_the_key(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.SHADOW)
    payment = a_payment()
    await harness.postgres.put_if_newer(payment)
    await harness.dynamo.put_if_newer(dataclasses.replace(payment, status=PaymentStatus.REVERSED))

    with caplog.at_level(logging.INFO):
        assert await replica.store.get_by_idempotency_key(payment.idempotency_key) == payment
        await replica.hybrid.wait_for_shadow_reads()
    recorded = await harness.pool.fetch(
        "SELECT item_key, fields FROM migration.shadow_mismatches WHERE item_key LIKE 'idempotency%'"
    )

    digest = idempotency_mismatch_key(payment.idempotency_key)
    assert (digest, ["status"]) in replica.hybrid.shadow.mismatches
    assert (digest, ["status"]) in [(row["item_key"], row["fields"]) for row in recorded]
    assert all(payment.idempotency_key not in row["item_key"] for row in recorded)
    assert "shadow mismatch" in caplog.text
    assert payment.idempotency_key not in caplog.text + str([r.__dict__ for r in caplog.records])


async def test_a_key_with_a_pending_journal_entry_is_read_from_postgres(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DYNAMO_PRIMARY)
    payment = a_payment()
    await harness.in_postgres_only(replica, payment)

    assert await harness.in_dynamo(payment) is None
    assert await replica.store.get(payment.id) == payment
    assert await replica.store.list_for_customer(payment.customer_id, None, None, None, 5) == [payment]
    assert await replica.store.get_by_idempotency_key(payment.idempotency_key) == payment

    await replica.relay.drain()
    assert await harness.in_dynamo(payment) == payment


async def test_a_fresh_copy_settles_before_dynamodb_serves_its_keys(harness: Harness) -> None:
    replica = await harness.replica(settle_seconds=30)  # ample on any machine; the test ends the window itself
    await harness.set_stage(Stage.DYNAMO_PRIMARY)
    payment = await replica.store.create(a_payment())
    await replica.hybrid.wait_for_copies()
    assert (await replica.hybrid.journal.backlog()).pending == 0  # copied: nothing left for the relay
    # On real DynamoDB a GSI (or an eventually consistent read) can miss a write for a moment; DynamoDB Local
    # cannot, so stand in for that lag by taking the copy away again.
    await harness.dynamo_client.delete_item(TableName=harness.table_name, Key={"pk": {"S": str(payment.id)}})

    during = (
        await replica.store.get(payment.id),
        await replica.store.list_for_customer(payment.customer_id, None, None, None, 10),
    )
    await harness.pool.execute(  # the window runs out
        "UPDATE migration.journal_settling SET settles_at = now() WHERE routing_keys && $1::text[]",
        [f"customer:{payment.customer_id}"],
    )
    forgotten = await replica.hybrid.journal.forget_settled()
    after = (
        await replica.store.get(payment.id),
        await replica.store.list_for_customer(payment.customer_id, None, None, None, 10),
    )

    # The listing (a GSI) is served by PostgreSQL while the copy settles; the get (a consistent GetItem) by DynamoDB.
    assert during == (None, [payment])
    assert forgotten >= 1  # this copy, and any other test's settled copy of the shared "payments" journal
    assert not await harness.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM migration.journal_settling WHERE routing_keys && $1::text[])",
        [f"customer:{payment.customer_id}"],
    )
    assert after == (None, [])  # settled: DynamoDB serves the keys again (and, here, has lost the item)


async def test_shadow_comparison_does_not_report_keys_with_writes_in_flight(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.SHADOW)
    payment = a_payment()
    await harness.in_postgres_only(replica, payment)

    await replica.store.get(payment.id)
    await replica.hybrid.wait_for_shadow_reads()

    assert replica.hybrid.shadow.mismatched == 0
    assert replica.hybrid.shadow.skipped_pending == 1


async def test_a_dynamodb_outage_under_load_fails_no_read_and_loses_no_write(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=3)
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    customer = a_payment().customer_id
    before = [await replica.store.create(a_payment(customer, paid_at=T0 + timedelta(minutes=i))) for i in range(5)]

    dynamo.freeze()
    written, read_failures = [], 0
    for i in range(20):
        written.append(await replica.store.create(a_payment(customer, paid_at=T0 + timedelta(hours=1, minutes=i))))
        try:
            history = await replica.store.list_for_customer(customer, None, None, None, 100)
            assert {p.id for p in before + written} <= {p.id for p in history}
            assert await replica.store.get(before[0].id) == before[0]
        except Unavailable:
            read_failures += 1
    backlog = await replica.hybrid.journal.backlog()
    dynamo.thaw()

    assert read_failures == 0
    assert backlog.pending >= len(written) - 1  # the copies failed: the journal holds them
    await asyncio.sleep(1.1)  # the breaker's recovery time and the journal's lease
    await harness.pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = 'payments'")
    await replica.relay.drain()
    assert (await replica.hybrid.journal.backlog()).pending == 0
    for payment in before + written:
        assert await harness.in_dynamo(payment) == await harness.in_postgres(payment) == payment


async def test_without_fallback_or_in_dynamo_only_an_outage_is_unavailable(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2)
    payment = await replica.store.create(a_payment())
    await replica.hybrid.wait_for_copies()  # in DynamoDB, so reads of it are DynamoDB's to serve

    dynamo.freeze()
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=False)
    with pytest.raises(Unavailable):
        await replica.store.get(payment.id)
    await harness.set_stage(Stage.DYNAMO_ONLY, fallback=True)
    with pytest.raises(Unavailable):
        await replica.store.get(payment.id)
    with pytest.raises(Unavailable):
        await replica.store.create(a_payment())
    dynamo.thaw()


async def journaled_during_an_outage(harness: Harness, dynamo: OwnDynamo, count: int) -> tuple[Replica, list[Payment]]:
    """A dual-writing replica and `count` payments it created while DynamoDB was frozen: in PostgreSQL, with their
    copies left to the journal (the breaker never opens, so each write tried its copy)."""
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=1000)
    await harness.set_stage(Stage.DUAL_WRITE)
    dynamo.freeze()
    payments = [await replica.store.create(a_payment()) for _ in range(count)]
    await replica.hybrid.wait_for_copies()  # each copy tried (and failed) while DynamoDB was frozen
    dynamo.thaw()
    return replica, payments


async def test_the_relay_leaves_a_write_to_its_own_copy_so_dynamodb_takes_it_once(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=5.0, relay_head_start_seconds=30.0)
    await harness.set_stage(Stage.DUAL_WRITE)
    dynamo.freeze()  # the copy is in flight, slow
    payment = await replica.store.create(a_payment())

    assert await replica.hybrid.journal.claim_due(10) == []  # the relay would find nothing to copy twice
    dynamo.thaw()
    await replica.hybrid.wait_for_copies()
    assert (await replica.hybrid.journal.backlog()).pending == 0
    assert await harness.in_dynamo(payment) == payment


async def test_a_failed_copy_and_a_write_past_the_copy_limit_are_the_relays_at_once(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    await harness.set_stage(Stage.DUAL_WRITE)
    failing = await harness.replica(dynamo_timeout_seconds=0.2, relay_head_start_seconds=30.0)
    unstarted = await harness.replica(relay_head_start_seconds=30.0, background_copy_limit=0)
    dynamo.freeze()
    failed = await failing.store.create(a_payment())
    await failing.hybrid.wait_for_copies()
    dynamo.thaw()
    left = await unstarted.store.create(a_payment())

    claimed = await failing.hybrid.journal.claim_due(10)
    assert sorted(entry.item_key for entry in claimed) == sorted([str(failed.id), str(left.id)])


async def test_a_relay_that_dies_mid_drain_loses_nothing_and_never_writes_back_an_old_version(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica, payments = await journaled_during_an_outage(harness, dynamo, 12)

    # A relay claims a batch and dies before copying it: its lease is all that is left of it.
    claimed = await replica.hybrid.journal.claim_due(5)
    assert len(claimed) == 5
    # Meanwhile new versions of two of the claimed payments are written (and copied).
    newer = []
    for payment in payments[:2]:
        changed = dataclasses.replace(payment, status=PaymentStatus.REVERSED, version=2)
        assert await replica.store.update(changed, expected_version=1)
        newer.append(changed)
    # A restarted relay drains everything once the dead one's lease has run out.
    await asyncio.sleep(1.1)
    await replica.relay.drain()

    assert (await replica.hybrid.journal.backlog()).pending == 0
    for payment in newer + payments[2:]:
        assert await harness.in_dynamo(payment) == payment
    customers = {p.customer_id for p in payments}
    listed = [p for c in customers for p in await harness.dynamo.list_for_customer(c, None, None, None, 10)]
    assert len(listed) == len(payments)  # no duplicates


async def test_a_stage_change_during_traffic_is_followed_by_every_replica_without_errors(harness: Harness) -> None:
    replicas = [await harness.replica(), await harness.replica()]
    await harness.set_stage(Stage.DUAL_WRITE)
    acknowledged = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def traffic(index: int) -> None:
        store = replicas[index].store
        while not stop.is_set():
            try:
                payment = await store.create(a_payment())
                acknowledged.append(payment)
                assert await store.get(payment.id) == payment
            except Exception as error:
                errors.append(error)

    workers = [asyncio.create_task(traffic(i % 2)) for i in range(4)]
    for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY, Stage.DYNAMO_LIVE, Stage.DUAL_WRITE):
        await asyncio.sleep(0.3)
        await harness.set_stage(stage)  # fails unless both replicas follow within 1 s
    stop.set()
    await asyncio.gather(*workers)

    for replica in replicas:  # the copies still in flight, or left to the relay past the limit, land
        await replica.hybrid.wait_for_copies()
        await replica.relay.drain()

    assert errors == []
    assert len(acknowledged) > 20
    for payment in acknowledged:
        assert await harness.in_postgres(payment) == payment
        assert await harness.in_dynamo(payment) == payment


async def test_a_page_token_from_postgres_continues_on_dynamodb_after_a_stage_change(harness: Harness) -> None:
    replica = await harness.replica()
    await harness.set_stage(Stage.DUAL_WRITE)

    class FundedLoans:
        async def standing(self, loan_id: object, customer_id: object) -> object:
            raise AssertionError("not used by listings")

    use_cases = PaymentUseCases(replica.store, FundedLoans(), PageTokens("p" * 32, "payment"))  # type: ignore[arg-type]
    customer = a_payment().customer_id
    created = [await replica.store.create(a_payment(customer, paid_at=T0 + timedelta(minutes=i))) for i in range(7)]

    first = await use_cases.list_customer_payments(str(customer), None, None, 3, "")
    await harness.set_stage(Stage.DYNAMO_PRIMARY)
    rest: list[Payment] = []
    token = first.next_page_token
    while token:
        page = await use_cases.list_customer_payments(str(customer), None, None, 3, token)
        rest.extend(page.items)
        token = page.next_page_token

    assert [p.id for p in [*first.items, *rest]] == [p.id for p in reversed(created)]


async def test_store_calls_are_spans_tagged_with_backend_stage_and_route(
    outage_harness: tuple[Harness, OwnDynamo], spans: InMemorySpanExporter
) -> None:
    harness, dynamo = outage_harness
    # The healthy read below must be served by DynamoDB: with a 0.2 s budget a busy CI machine timed it out
    # once and fell back, leaving no shadow comparison. 2 s is ample for a read and bounds the outage's wait.
    replica = await harness.replica(dynamo_timeout_seconds=2.0)
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    payment = await replica.store.create(a_payment())
    # The inline copy can still miss its budget and leave the payment to the relay; until the journal is
    # drained, reads of it come from PostgreSQL (read-your-writes), so wait for the copy.
    for _ in range(100):
        await replica.relay.drain()
        if (await replica.hybrid.journal.backlog()).pending == 0:
            break
        await asyncio.sleep(0.1)
    spans.clear()

    await replica.store.get(payment.id)
    await replica.hybrid.wait_for_shadow_reads()
    healthy = spans.get_finished_spans()
    served = [s for s in healthy if s.name == "payments.get dynamodb"]
    shadow = [s for s in healthy if s.name == "payments.get postgres"]
    spans.clear()
    dynamo.freeze()
    await replica.store.get(payment.id)
    dynamo.thaw()
    during_outage = spans.get_finished_spans()
    fallback = [s for s in during_outage if s.name == "payments.get postgres"]

    assert served[0].attributes is not None
    assert {key: served[0].attributes[key] for key in STORE_KEYS} == {
        "db.system": "dynamodb",
        "db.collection.name": "payments",
        "db.operation.name": "get",
        "loanbook.store.backend": "dynamodb",
        "loanbook.migration.stage": "dynamo_live",
        "loanbook.route.reason": "stage",
    }
    assert served[0].status.is_unset, [(s.name, s.status.status_code, s.attributes) for s in healthy]
    assert len(shadow) == 1, [(s.name, s.attributes) for s in healthy]
    assert shadow[0].attributes is not None
    assert shadow[0].attributes["loanbook.store.backend"] == "postgres"
    assert shadow[0].attributes["loanbook.route.reason"] == "shadow"
    assert shadow[0].attributes["loanbook.shadow.result"] == "match"
    assert fallback, [(s.name, s.attributes) for s in during_outage]
    assert fallback[0].attributes is not None
    assert {key: fallback[0].attributes[key] for key in STORE_KEYS} == {
        "db.system": "postgresql",
        "db.collection.name": "payments",
        "db.operation.name": "get",
        "loanbook.store.backend": "postgres",
        "loanbook.migration.stage": "dynamo_live",
        "loanbook.route.reason": "fallback",
    }
    assert fallback[0].attributes["loanbook.store.fallback"] is True
    # No customer data in any attribute or event: only ids of the store and stage vocabulary.
    for span in [*healthy, *during_outage]:
        assert str(payment.customer_id) not in str(span.attributes) + str([e.attributes for e in span.events])


STORE_KEYS = (
    "db.system",
    "db.collection.name",
    "db.operation.name",
    "loanbook.store.backend",
    "loanbook.migration.stage",
    "loanbook.route.reason",
)


PROJECT_ROOT = Path(__file__).resolve().parents[3]

RELAY_PROCESS = """
import asyncio, sys, uuid
from datetime import timedelta
import aioboto3, asyncpg
from migration.journal import Journal
from migration.relay import Relay
from services.payment.adapters.dynamodb import DynamoPaymentRepository
from services.payment.adapters.postgres import PostgresPaymentRepository

async def main(dsn, endpoint, table):
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    session = aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")
    async with session.client("dynamodb", endpoint_url=endpoint) as client:
        postgres, dynamo = PostgresPaymentRepository(pool), DynamoPaymentRepository(client, table)

        async def replicate(key):
            payment = await postgres.get(uuid.UUID(key))
            if payment is not None:
                await dynamo.put_if_newer(payment)
            print("copied", key, flush=True)
            await asyncio.sleep(0.3)  # slow on purpose: the kill lands in the middle of a batch

        journal = Journal(pool, "payments", lease=timedelta(seconds=1))
        await Relay(journal, replicate, batch_size=50, concurrency=1).drain()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_relay_process_killed_mid_batch_is_finished_by_the_next_with_nothing_lost_or_stale(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica, payments = await journaled_during_an_outage(harness, dynamo, 10)
    assert (await replica.hybrid.journal.backlog()).pending == 10

    relay = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RELAY_PROCESS,
        harness.postgres_dsn,
        dynamo.server.endpoint,
        harness.table_name,
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    assert relay.stdout is not None
    for _ in range(3):  # let it copy three payments, then kill it without warning
        line = await asyncio.wait_for(relay.stdout.readline(), 20)
        assert line.startswith(b"copied")
    relay.kill()
    await relay.wait()
    # While its leases are still held, two payments change (and are copied at version 2).
    newer = [dataclasses.replace(p, status=PaymentStatus.REVERSED, version=2) for p in payments[-2:]]
    for changed in newer:
        assert await replica.store.update(changed, expected_version=1)

    await asyncio.sleep(1.1)  # the dead relay's leases run out
    await replica.relay.drain()

    assert (await replica.hybrid.journal.backlog()).pending == 0
    for payment in payments[:-2] + newer:
        assert await harness.in_dynamo(payment) == await harness.in_postgres(payment) == payment
    for payment in payments:  # exactly one item per payment: nothing duplicated
        listed = await harness.dynamo.list_for_customer(payment.customer_id, None, None, None, 10)
        assert [p.id for p in listed] == [payment.id]


async def test_on_the_way_back_from_dynamo_only_a_key_with_a_pending_write_is_read_from_both_stores(
    harness: Harness, spans: InMemorySpanExporter
) -> None:
    replica = await harness.replica(settle_seconds=30)  # the customer's listing stays pending after each write
    await harness.set_stage(Stage.DYNAMO_ONLY)
    customer = a_payment().customer_id
    in_dynamo_only = [
        await replica.store.create(a_payment(customer, paid_at=T0 + timedelta(minutes=i))) for i in range(3)
    ]
    await harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=False, postgres_complete=False)  # as rollback leaves it
    assert not replica.watcher.mode("payments").postgres_complete

    # Written on the way back (PostgreSQL first): the customer's listing now has a pending write.
    on_the_way_back = await replica.store.create(a_payment(customer, paid_at=T0 + timedelta(hours=1)))
    reversed_payment = dataclasses.replace(in_dynamo_only[0], status=PaymentStatus.REVERSED, version=2)
    assert await replica.store.update(reversed_payment, expected_version=1)
    assert await replica.hybrid.journal.has_pending([f"customer:{customer}"])
    spans.clear()

    history = await replica.store.list_for_customer(customer, None, None, None, 10)
    first_two = await replica.store.list_for_customer(customer, None, None, None, 2)
    by_key = await replica.store.get_by_idempotency_key(in_dynamo_only[1].idempotency_key)

    # PostgreSQL alone would miss in_dynamo_only[1:]; DynamoDB alone could miss a write still being copied.
    assert history == [on_the_way_back, *reversed([reversed_payment, *in_dynamo_only[1:]])]
    assert first_two == history[:2]
    assert by_key == in_dynamo_only[1]
    merged = [s for s in spans.get_finished_spans() if s.name.startswith("payments.list_for_customer ")]
    assert {(s.attributes or {}).get("loanbook.store.backend") for s in merged} == {"postgres", "dynamodb"}
    assert {(s.attributes or {}).get("loanbook.route.reason") for s in merged} == {"merged"}
    assert all((s.attributes or {}).get("loanbook.store.merged") for s in merged if s.name.endswith(" postgres"))


async def test_on_the_way_back_from_dynamo_only_nothing_falls_back_to_the_incomplete_postgres(
    outage_harness: tuple[Harness, OwnDynamo],
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2)
    await harness.set_stage(Stage.DYNAMO_ONLY)
    payment = await replica.store.create(a_payment())
    # Fallback on here only to show PostgreSQL is not fallen back to while incomplete (the guards refuse this mode).
    await harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=True, postgres_complete=False)

    dynamo.freeze()
    try:
        with pytest.raises(Unavailable):
            await replica.store.list_for_customer(payment.customer_id, None, None, None, 10)
        with pytest.raises(Unavailable):
            await replica.store.get(payment.id, for_write=True)
    finally:
        dynamo.thaw()


@dataclasses.dataclass
class FundedLoans:
    """Every loan exists, is funded and belongs to whoever asks: these tests are about the stores."""

    async def standing(self, loan_id: object, customer_id: object) -> LoanStanding:
        return LoanStanding(exists=True, belongs_to_customer=True, funded=True, principal=Money("USD", 10**12))


def a_request(payment: Payment) -> RecordPayment:
    return RecordPayment(
        idempotency_key=payment.idempotency_key,
        customer_id=str(payment.customer_id),
        loan_id=str(payment.loan_id),
        amount=MoneyInput(payment.amount.currency, payment.amount.minor_units // 100, 0),
        method=payment.method,
        paid_at=payment.paid_at,
    )


@pytest.mark.parametrize("stage", [Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY])
async def test_with_fallback_off_a_dynamodb_outage_refuses_no_write_where_postgres_is_authoritative(
    outage_harness: tuple[Harness, OwnDynamo], stage: Stage
) -> None:
    harness, dynamo = outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=3)
    use_cases = PaymentUseCases(replica.store, FundedLoans(), PageTokens("p" * 32, "payment"))
    await harness.set_stage(stage, fallback=False)
    earlier, _ = await use_cases.record_payment(a_request(a_payment()))
    untouched, _ = await use_cases.record_payment(a_request(a_payment()))
    await replica.hybrid.wait_for_copies()  # both in DynamoDB before it freezes

    dynamo.freeze()
    try:
        requests = [a_request(a_payment()) for _ in range(8)]
        recorded = [(await use_cases.record_payment(request))[0] for request in requests]
        replayed = await use_cases.record_payment(requests[0])  # a client's retry: answered from PostgreSQL
        reversed_payment = await use_cases.reverse_payment(str(earlier.id), earlier.version, "customer asked")
        with pytest.raises(VersionConflict):
            await use_cases.reverse_payment(str(earlier.id), earlier.version, "a stale second try")
        with pytest.raises(Unavailable):  # readers follow the fallback switch: off, so no PostgreSQL answer
            await use_cases.get_payment(str(untouched.id))
    finally:
        dynamo.thaw()

    assert replayed == (recorded[0], True)
    assert reversed_payment.status is PaymentStatus.REVERSED
    await asyncio.sleep(1.1)  # the breaker's recovery time and the journal's lease
    await harness.pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = 'payments'")
    await replica.relay.drain()
    for payment in [*recorded, reversed_payment]:
        assert await harness.in_dynamo(payment) == await harness.in_postgres(payment) == payment
