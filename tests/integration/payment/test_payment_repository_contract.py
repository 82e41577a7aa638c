"""One PaymentRepository contract, run on the in-memory fake, PostgreSQL and DynamoDB Local alike."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, cast

import asyncpg
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from chassis.errors import AlreadyExists, Unavailable
from chassis.ids import new_id
from chassis.money import Money
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository, listing_query
from services.payment.domain import Payment, PaymentCursor, PaymentMethod, PaymentStatus, request_fingerprint
from services.payment.ports import IdempotencyKeyTaken, PaymentRepository
from services.payment.schema import upgrade_to_head
from tests.support.dynamodb import local_session, scan_refusing_client
from tests.support.fakes.payment_repository import InMemoryPaymentRepository

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

BACKENDS = ["memory", "postgres", "dynamodb"]
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
# Above 2**53: a float anywhere on the way would change it.
LARGE_AMOUNT = Money("USD", 9_007_199_254_740_993)
MAX_PAGES = 50


def refuse_scan(**_: Any) -> None:
    raise AssertionError("a payment access pattern used Scan")


@pytest.fixture(scope="module")
async def payment_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_to_head(postgres_dsn)
    async with asyncpg.create_pool(postgres_dsn, min_size=2, max_size=8) as pool:
        yield pool


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    """One client for the module, as in a process; any Scan through it fails the test that issued it."""
    async with scan_refusing_client(dynamodb_endpoint, refuse_scan) as client:
        yield client


@pytest.fixture(scope="module")
async def payment_table(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    table = f"payments-contract-{secrets.token_hex(4)}"
    await ensure_payment_table(dynamodb, table)
    try:
        yield table
    finally:
        await dynamodb.delete_table(TableName=table)


@pytest.fixture
def repositories(
    payment_pool: asyncpg.Pool, dynamodb: DynamoDBClient, payment_table: str
) -> dict[str, PaymentRepository]:
    return {
        "memory": InMemoryPaymentRepository(),
        "postgres": PostgresPaymentRepository(payment_pool),
        "dynamodb": DynamoPaymentRepository(dynamodb, payment_table),
    }


@pytest.fixture(params=BACKENDS)
def repository(request: pytest.FixtureRequest, repositories: dict[str, PaymentRepository]) -> PaymentRepository:
    backend: str = request.param
    return repositories[backend]


def a_payment(
    customer_id: uuid.UUID | None = None,
    loan_id: uuid.UUID | None = None,
    paid_at: datetime = T0,
    **overrides: Any,
) -> Payment:
    """A valid version-1 payment with fresh ids and key, so tests on shared stores never collide."""
    customer_id = customer_id or new_id()
    loan_id = loan_id or new_id()
    amount = overrides.pop("amount", Money("EUR", 12_345))
    method = overrides.pop("method", PaymentMethod.ACH)
    payment = Payment(
        id=new_id(),
        customer_id=customer_id,
        loan_id=loan_id,
        amount=amount,
        method=method,
        status=PaymentStatus.SETTLED,
        paid_at=paid_at,
        created_at=paid_at + timedelta(seconds=1, microseconds=7),
        updated_at=paid_at + timedelta(seconds=1, microseconds=7),
        version=1,
        idempotency_key=f"key-{secrets.token_hex(8)}",
        request_fingerprint=request_fingerprint(customer_id, loan_id, amount, method, paid_at),
    )
    return replace(payment, **overrides)


def newest_first(payments: list[Payment]) -> list[Payment]:
    return sorted(payments, key=lambda p: (p.paid_at, p.id), reverse=True)


def cursor_of(payment: Payment) -> PaymentCursor:
    return PaymentCursor(payment.paid_at, payment.id)


async def all_pages(
    repository: PaymentRepository, customer_id: uuid.UUID, page_size: int, **bounds: Any
) -> list[list[Payment]]:
    """Every page until an empty one; a cursor that fails to advance fails the test instead of looping."""
    pages: list[list[Payment]] = []
    after: PaymentCursor | None = None
    for _ in range(MAX_PAGES):
        page = await repository.list_for_customer(
            customer_id, bounds.get("paid_from"), bounds.get("paid_to"), after, page_size
        )
        if not page:
            return pages
        pages.append(page)
        after = cursor_of(page[-1])
    pytest.fail(f"paging did not end within {MAX_PAGES} pages")


def is_utc(value: datetime) -> bool:
    return value.utcoffset() == timedelta(0)


# --- create and read -------------------------------------------------------------------------------------------


async def test_a_created_payment_reads_back_with_every_field_exact(repository: PaymentRepository) -> None:
    payment = a_payment(amount=LARGE_AMOUNT, method=PaymentMethod.WIRE, status=PaymentStatus.PENDING)

    created = await repository.create(payment)
    fetched = await repository.get(payment.id)

    assert created == payment
    assert fetched == payment
    assert fetched is not None
    assert fetched.amount.minor_units == 9_007_199_254_740_993
    assert fetched.paid_at.microsecond == 123456
    assert all(is_utc(value) for value in (fetched.paid_at, fetched.created_at, fetched.updated_at))


async def test_timestamps_come_back_in_utc_whatever_offset_they_were_given_in(repository: PaymentRepository) -> None:
    new_york = timezone(timedelta(hours=-5))
    payment = a_payment(paid_at=T0.astimezone(new_york))

    await repository.create(payment)
    fetched = await repository.get(payment.id)

    assert fetched is not None
    assert fetched.paid_at == T0
    assert is_utc(fetched.paid_at)
    assert is_utc(fetched.created_at)


async def test_an_unknown_payment_or_key_reads_as_none(repository: PaymentRepository) -> None:
    assert await repository.get(new_id()) is None
    assert await repository.get_by_idempotency_key(f"never-used-{secrets.token_hex(4)}") is None


async def test_a_payment_is_found_by_its_idempotency_key(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(a_payment())  # another payment, another key

    await repository.create(payment)

    assert await repository.get_by_idempotency_key(payment.idempotency_key) == payment


# --- idempotency -----------------------------------------------------------------------------------------------


async def test_a_second_create_with_a_used_key_is_refused_with_the_original(repository: PaymentRepository) -> None:
    original = a_payment()
    await repository.create(original)
    retry = a_payment(customer_id=original.customer_id, idempotency_key=original.idempotency_key)

    with pytest.raises(IdempotencyKeyTaken) as refused:
        await repository.create(retry)

    assert refused.value.existing == original
    assert await repository.get(retry.id) is None
    assert await repository.list_for_customer(original.customer_id, None, None, None, 10) == [original]


async def test_replaying_the_same_create_is_refused_with_the_stored_payment(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)

    with pytest.raises(IdempotencyKeyTaken) as refused:
        await repository.create(replace(payment, status=PaymentStatus.FAILED))

    assert refused.value.existing == payment
    assert await repository.get(payment.id) == payment


async def test_a_new_key_with_a_used_payment_id_already_exists(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)

    with pytest.raises(AlreadyExists) as refused:
        await repository.create(replace(payment, idempotency_key=f"other-{secrets.token_hex(4)}"))

    assert not isinstance(refused.value, IdempotencyKeyTaken)
    assert refused.value.field == "id"
    assert await repository.get(payment.id) == payment


async def test_concurrent_creates_with_one_key_store_exactly_one_payment(repository: PaymentRepository) -> None:
    customer_id, key = new_id(), f"race-{secrets.token_hex(8)}"
    contenders = [a_payment(customer_id=customer_id, idempotency_key=key) for _ in range(6)]

    outcomes = await asyncio.gather(*(repository.create(p) for p in contenders), return_exceptions=True)

    winners = [outcome for outcome in outcomes if isinstance(outcome, Payment)]
    losers = [outcome for outcome in outcomes if not isinstance(outcome, Payment)]
    assert len(winners) == 1
    assert all(isinstance(loser, IdempotencyKeyTaken) for loser in losers)
    assert all(loser.existing == winners[0] for loser in losers if isinstance(loser, IdempotencyKeyTaken))
    assert await repository.list_for_customer(customer_id, None, None, None, 10) == winners
    assert await repository.get_by_idempotency_key(key) == winners[0]


# --- listings --------------------------------------------------------------------------------------------------


async def test_a_customers_history_pages_newest_first_without_gaps_or_duplicates(
    repository: PaymentRepository,
) -> None:
    customer_id = new_id()
    # Groups of payments share a paid_at, so the id alone orders them; a page boundary falls inside groups.
    payments = [
        a_payment(customer_id=customer_id, paid_at=T0 + timedelta(minutes=i // 3, microseconds=i % 2))
        for i in range(23)
    ]
    for payment in payments:
        await repository.create(payment)
    await repository.create(a_payment(paid_at=T0))  # another customer's payment stays out

    pages = await all_pages(repository, customer_id, page_size=4)

    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 3]
    assert [p for page in pages for p in page] == newest_first(payments)


async def test_the_time_range_includes_its_start_and_excludes_its_end(repository: PaymentRepository) -> None:
    customer_id = new_id()
    at = {name: T0 + timedelta(hours=hours) for name, hours in (("before", -1), ("start", 0), ("mid", 1), ("end", 2))}
    payments = {name: a_payment(customer_id=customer_id, paid_at=when) for name, when in at.items()}
    twin = a_payment(customer_id=customer_id, paid_at=at["start"])  # same instant as the start
    for payment in [*payments.values(), twin]:
        await repository.create(payment)

    listed = await repository.list_for_customer(customer_id, at["start"], at["end"], None, 10)
    paged = await all_pages(repository, customer_id, page_size=1, paid_from=at["start"], paid_to=at["end"])
    just_before_end = await repository.list_for_customer(
        customer_id, at["end"] - timedelta(microseconds=1), None, None, 10
    )

    assert listed == newest_first([payments["start"], twin, payments["mid"]])
    assert [page[0] for page in paged] == listed
    assert just_before_end == [payments["end"]]


async def test_an_empty_or_inverted_time_range_lists_nothing(repository: PaymentRepository) -> None:
    customer_id = new_id()
    await repository.create(a_payment(customer_id=customer_id, paid_at=T0))

    assert await repository.list_for_customer(customer_id, T0, T0, None, 10) == []
    assert await repository.list_for_customer(customer_id, T0 + timedelta(hours=1), T0, None, 10) == []
    assert await repository.list_for_customer(customer_id, None, None, None, 0) == []


async def test_a_loans_payments_page_newest_first_and_leave_other_loans_out(repository: PaymentRepository) -> None:
    customer_id, loan_id = new_id(), new_id()
    on_loan = [
        a_payment(customer_id=customer_id, loan_id=loan_id, paid_at=T0 + timedelta(days=i % 4)) for i in range(9)
    ]
    for payment in on_loan:
        await repository.create(payment)
    await repository.create(a_payment(customer_id=customer_id, paid_at=T0))  # same customer, other loan

    listed: list[Payment] = []
    after: PaymentCursor | None = None
    for _ in range(MAX_PAGES):
        page = await repository.list_for_loan(loan_id, after, 4)
        if not page:
            break
        listed.extend(page)
        after = cursor_of(page[-1])

    assert listed == newest_first(on_loan)


@pytest.mark.parametrize(
    ("first", "second"), [(a, b) for a in BACKENDS for b in BACKENDS if a != b], ids=lambda name: str(name)
)
async def test_a_cursor_from_one_back_end_continues_on_another(
    repositories: dict[str, PaymentRepository], first: str, second: str
) -> None:
    customer_id = new_id()
    payments = [
        a_payment(customer_id=customer_id, paid_at=T0 + timedelta(seconds=i // 2, microseconds=i)) for i in range(10)
    ]
    for payment in payments:
        await repositories[first].create(payment)
        await repositories[second].create(payment)

    listed: list[Payment] = []
    after: PaymentCursor | None = None
    for turn in range(10):
        # Alternate back ends on every page, as a stage change between two requests would.
        page = await repositories[(first, second)[turn % 2]].list_for_customer(customer_id, None, None, after, 3)
        if not page:
            break
        listed.extend(page)
        after = cursor_of(page[-1])

    assert listed == newest_first(payments)


# --- versions --------------------------------------------------------------------------------------------------


async def test_an_update_at_the_expected_version_replaces_the_payment(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)
    reversed_payment = payment.reversed_at(T0 + timedelta(days=1, microseconds=5))

    assert await repository.update(reversed_payment, expected_version=1) is True
    assert await repository.get(payment.id) == reversed_payment
    assert await repository.get_by_idempotency_key(payment.idempotency_key) == reversed_payment


async def test_an_update_at_a_stale_version_changes_nothing(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)
    current = payment.reversed_at(T0 + timedelta(days=1))
    await repository.update(current, expected_version=1)
    stale = replace(payment, status=PaymentStatus.FAILED, version=2)

    assert await repository.update(stale, expected_version=1) is False
    assert await repository.get(payment.id) == current
    assert await repository.update(a_payment(version=2), expected_version=1) is False  # absent: nothing to update


async def test_an_update_cannot_move_a_payment_to_another_idempotency_key(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)

    moved = replace(payment, idempotency_key=f"moved-{secrets.token_hex(4)}", version=2)

    assert await repository.update(moved, expected_version=1) is False
    assert await repository.get(payment.id) == payment


async def test_put_if_newer_writes_a_payment_that_is_absent(repository: PaymentRepository) -> None:
    payment = a_payment(version=3)

    assert await repository.put_if_newer(payment) is True
    assert await repository.get(payment.id) == payment
    assert await repository.get_by_idempotency_key(payment.idempotency_key) == payment
    assert await repository.list_for_customer(payment.customer_id, None, None, None, 10) == [payment]


async def test_put_if_newer_writes_a_newer_version(repository: PaymentRepository) -> None:
    payment = a_payment()
    await repository.create(payment)
    newer = payment.reversed_at(T0 + timedelta(days=2))

    assert await repository.put_if_newer(newer) is True
    assert await repository.get(payment.id) == newer


@pytest.mark.parametrize("version", [1, 2], ids=["older", "equal"])
async def test_put_if_newer_refuses_an_older_or_equal_version(repository: PaymentRepository, version: int) -> None:
    payment = a_payment()
    await repository.create(payment)
    current = payment.reversed_at(T0 + timedelta(days=1))
    await repository.update(current, expected_version=1)
    late = replace(payment, status=PaymentStatus.FAILED, amount=Money("EUR", 1), version=version)

    assert await repository.put_if_newer(late) is False
    assert await repository.get(payment.id) == current


async def test_put_if_newer_is_idempotent_on_replay(repository: PaymentRepository) -> None:
    payment = a_payment(version=2)

    first = await repository.put_if_newer(payment)
    replays = [await repository.put_if_newer(payment) for _ in range(3)]

    assert first is True
    assert replays == [False, False, False]
    assert await repository.get(payment.id) == payment
    assert await repository.list_for_customer(payment.customer_id, None, None, None, 10) == [payment]


async def test_put_if_newer_refuses_a_key_held_by_another_payment(repository: PaymentRepository) -> None:
    holder = a_payment()
    await repository.create(holder)
    intruder = a_payment(idempotency_key=holder.idempotency_key)

    with pytest.raises(IdempotencyKeyTaken) as refused:
        await repository.put_if_newer(intruder)

    assert refused.value.existing == holder
    assert await repository.get(intruder.id) is None


# --- PostgreSQL only ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "index"), [("customer_id", "payments_customer_paid_idx"), ("loan_id", "payments_loan_paid_idx")]
)
async def test_a_postgres_page_after_a_cursor_is_one_range_scan_of_its_index(
    payment_pool: asyncpg.Pool, column: Literal["customer_id", "loan_id"], index: str
) -> None:
    query, *arguments = listing_query(column, new_id(), T0 - timedelta(days=30), T0, PaymentCursor(T0, new_id()), 50)
    async with payment_pool.acquire() as connection, connection.transaction():
        # With few rows the planner may pick any plan; pricing out the alternatives makes it show whether the
        # index can serve filter, cursor and order at once.
        await connection.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        await connection.execute("SET LOCAL enable_sort = off")
        plan = json.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *arguments))
    scan = plan[0]["Plan"]["Plans"][0]

    assert (scan["Node Type"], scan["Index Name"]) == ("Index Scan", index)
    assert "ROW(paid_at, id) <" in scan["Index Cond"]  # the cursor seeks; it is not a filter over skipped rows
    assert "Filter" not in scan


# --- DynamoDB only ---------------------------------------------------------------------------------------------


async def test_ensure_payment_table_is_idempotent_and_builds_both_indexes(dynamodb: DynamoDBClient) -> None:
    table = f"payments-ensure-{secrets.token_hex(4)}"
    try:
        # Two replicas starting at once, then a restart.
        await asyncio.gather(ensure_payment_table(dynamodb, table), ensure_payment_table(dynamodb, table))
        await ensure_payment_table(dynamodb, table)

        described = (await dynamodb.describe_table(TableName=table))["Table"]
        indexes = {
            index["IndexName"]: (
                [key["AttributeName"] for key in index["KeySchema"]],
                index["Projection"].get("ProjectionType"),
            )
            for index in described.get("GlobalSecondaryIndexes", [])
        }
        assert described.get("TableStatus") == "ACTIVE"
        assert described.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
        assert [key["AttributeName"] for key in described["KeySchema"]] == ["pk"]
        assert indexes == {
            "by_customer": (["customer_id", "paid_sk"], "ALL"),
            "by_loan": (["loan_id", "paid_sk"], "ALL"),
        }
    finally:
        await dynamodb.delete_table(TableName=table)


async def test_ensure_payment_table_adds_indexes_missing_from_an_older_table(dynamodb: DynamoDBClient) -> None:
    table = f"payments-older-{secrets.token_hex(4)}"
    await dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        await ensure_payment_table(dynamodb, table, poll_seconds=0.05)
        repository = DynamoPaymentRepository(dynamodb, table)
        payment = a_payment()
        await repository.create(payment)

        assert await repository.list_for_customer(payment.customer_id, None, None, None, 5) == [payment]
        assert await repository.list_for_loan(payment.loan_id, None, 5) == [payment]
    finally:
        await dynamodb.delete_table(TableName=table)


async def test_a_dynamodb_listing_fills_its_limit_when_queries_return_short_pages(
    dynamodb: DynamoDBClient, payment_table: str
) -> None:
    repository = DynamoPaymentRepository(dynamodb, payment_table, query_page_size=3)
    customer_id = new_id()
    payments = [a_payment(customer_id=customer_id, paid_at=T0 + timedelta(minutes=i)) for i in range(40)]
    for payment in payments:
        await repository.create(payment)
    queries: list[int] = []

    def count_query(params: dict[str, Any], **_: Any) -> None:
        queries.append(params["Limit"])

    dynamodb.meta.events.register("provide-client-params.dynamodb.Query", count_query)
    try:
        first = await repository.list_for_customer(customer_id, None, None, None, 25)
        second = await repository.list_for_customer(customer_id, None, None, cursor_of(first[-1]), 25)
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.Query", count_query)

    assert first == newest_first(payments)[:25]
    assert second == newest_first(payments)[25:]
    assert max(queries) == 3
    assert len(queries) >= 25 // 3 + 15 // 3


async def test_dynamodb_sort_keys_are_fixed_width_utc_with_microseconds_then_the_id(
    dynamodb: DynamoDBClient, payment_table: str
) -> None:
    whole_second = datetime(2024, 3, 1, 7, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    payment = a_payment(paid_at=whole_second)
    await DynamoPaymentRepository(dynamodb, payment_table).create(payment)

    item = (await dynamodb.get_item(TableName=payment_table, Key={"pk": {"S": str(payment.id)}}))["Item"]
    marker_key = {"pk": {"S": f"IDEMPOTENCY#{payment.idempotency_key}"}}
    marker = (await dynamodb.get_item(TableName=payment_table, Key=marker_key))["Item"]

    assert item["paid_sk"] == {"S": f"2024-03-01T12:00:00.000000Z#{payment.id}"}
    assert item["amount_minor"] == {"N": "12345"}
    assert marker == {**marker_key, "payment_id": {"S": str(payment.id)}}  # no index attributes: sparse GSIs


async def test_the_scan_guard_of_these_tests_would_catch_a_scan(dynamodb: DynamoDBClient, payment_table: str) -> None:
    with pytest.raises(AssertionError, match="Scan"):
        await dynamodb.scan(TableName=payment_table, Limit=1)


async def test_an_unreachable_dynamodb_is_unavailable() -> None:
    config = AioConfig(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 1})
    session = local_session()
    async with session.client("dynamodb", endpoint_url="http://127.0.0.1:9", config=config) as client:
        repository = DynamoPaymentRepository(client, "payments-nowhere")
        with pytest.raises(Unavailable):
            await repository.get(new_id())
        with pytest.raises(Unavailable):
            await repository.create(a_payment())


class FlakyTransactions:
    """Stands in for the client where DynamoDB Local cannot: it cancels transactions as real DynamoDB may."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.attempts = 0

    async def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.attempts += 1
        if not self.failures:
            return {}
        code = self.failures.pop(0)
        if code == "ThrottlingException":
            raise ClientError({"Error": {"Code": code, "Message": "slow down"}}, "TransactWriteItems")
        cancelled = {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code}, {"Code": "None"}],
        }
        raise ClientError(cancelled, "TransactWriteItems")  # type: ignore[arg-type]


async def test_a_dynamodb_transaction_conflict_is_retried_until_it_commits() -> None:
    client = FlakyTransactions("TransactionConflict", "TransactionConflict")
    repository = DynamoPaymentRepository(cast("DynamoDBClient", client), "payments")
    payment = a_payment()

    assert await repository.create(payment) == payment
    assert client.attempts == 3


@pytest.mark.parametrize("failures", [["ThrottlingException"], ["TransactionConflict"] * 4], ids=["throttled", "busy"])
async def test_a_throttled_or_persistently_busy_dynamodb_is_unavailable(failures: list[str]) -> None:
    repository = DynamoPaymentRepository(cast("DynamoDBClient", FlakyTransactions(*failures)), "payments")

    with pytest.raises(Unavailable):
        await repository.put_if_newer(a_payment())


async def test_an_unreachable_postgres_is_unavailable(postgres_dsn: str) -> None:
    pool = await asyncpg.create_pool(postgres_dsn, min_size=0, max_size=1)
    await pool.close()
    repository = PostgresPaymentRepository(pool)

    with pytest.raises(Unavailable):
        await repository.get(new_id())


def test_each_adapter_names_its_back_end_for_traces(repositories: dict[str, PaymentRepository]) -> None:
    assert {name: repository.backend for name, repository in repositories.items()} == {n: n for n in BACKENDS}
