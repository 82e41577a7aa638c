"""toolkit.cost.operations against DynamoDB Local: our adapters' own calls consume what it says, Local's quirks aside.

Each test makes the calls through the real adapters (or the toolkit's bulk calls) on tables made from the code's
designs, reads what DynamoDB Local reported from the loanbook.dynamodb.consumed_capacity counter, and compares it
with units_per_call. Where Local differs from the service, the test asserts what Local does, and the difference is
the one listed in LOCAL_DIFFERENCES.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from services.logging.adapters.dynamodb import (
    BY_TRACE,
    LOG_TABLE,
    DynamoLogRepository,
    LogTableLayout,
    ensure_log_table,
)
from services.logging.domain import LogBatch, LogEntry, LogLevel
from services.payment.adapters.dynamodb import (
    BY_CUSTOMER,
    BY_LOAN,
    PAYMENT_TABLE,
    DynamoPaymentRepository,
    ensure_payment_table,
    marker_item,
    payment_item,
)
from services.payment.domain import Payment
from tests.support.dynamodb import delete_table_if_present, local_session
from tests.support.metrics import metric_reader, points
from tests.support.payments import a_payment
from toolkit.cost.capacity import batch_get_read_units
from toolkit.cost.operations import (
    LOCAL_DIFFERENCES,
    TABLE,
    BatchWrite,
    CopyPayment,
    GetPayment,
    HistoryPage,
    QueryLogsPage,
    RecordPayment,
    ReversePayment,
    TraceLogsPage,
    Units,
    WriteLogs,
    units_per_call,
)
from toolkit.cost.sizes import item_size
from toolkit.dynamo_io import Consumed, batch_get, batch_write

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

T = TypeVar("T")
HOUR = datetime(2026, 3, 1, 9, tzinfo=UTC)
LAYOUT = LogTableLayout(shards=1)  # one Query per hour: a page is one call


@dataclass
class Tables:
    client: DynamoDBClient
    payments: str
    logs: str

    def payment_repository(self) -> DynamoPaymentRepository:
        return DynamoPaymentRepository(self.client, self.payments)

    def log_repository(self) -> DynamoLogRepository:
        return DynamoLogRepository(self.client, self.logs, LAYOUT)


@pytest.fixture
async def tables(dynamodb_endpoint: str) -> AsyncIterator[Tables]:
    metric_reader()  # the counter's readings come from here
    async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        prefix = f"cost-{secrets.token_hex(4)}"
        names = Tables(client, f"{prefix}-payments", f"{prefix}-logs")
        try:
            await ensure_payment_table(client, names.payments, poll_seconds=0.05)
            await ensure_log_table(client, names.logs, poll_seconds=0.05)
            yield names
        finally:
            # The log table has TTL: see tests/integration/conftest.py for why none may outlive its test.
            for table in (names.payments, names.logs):
                await delete_table_if_present(client, table)


def reported(table: str) -> Units:
    """Everything DynamoDB Local has reported consumed on `table` so far, as the adapters counted it."""
    read: dict[str, float] = {}
    write: dict[str, float] = {}
    for point in points("loanbook.dynamodb.consumed_capacity", aws__dynamodb__table_name=table):
        attributes = point.attributes or {}
        target = str(attributes["aws.dynamodb.index_name"])
        kind = read if attributes["loanbook.capacity.kind"] == "read" else write
        kind[target] = kind.get(target, 0.0) + float(point.value)  # type: ignore[union-attr]
    return Units(read, write)


async def measured(table: str, call: Awaitable[T]) -> tuple[Units, T]:
    """What one call (or a few, awaited together) reported on `table`: the counter's change."""
    before = reported(table)
    result = await call
    after = reported(table)
    return Units(_change(before.read, after.read), _change(before.write, after.write)), result


def _change(before: Any, after: Any) -> dict[str, float]:
    changed = {target: after[target] - before.get(target, 0.0) for target in after}
    return {target: units for target, units in changed.items() if units}


def index_writes_doubled(units: Units) -> Units:
    """A transaction's units as DynamoDB Local reports them: LOCAL_DIFFERENCES[0]."""
    return Units(units.read, {target: w if target == TABLE else 2 * w for target, w in units.write.items()})


def payments_of_sizes(customer: uuid.UUID | None = None, loan: uuid.UUID | None = None) -> list[Payment]:
    """Payments whose items fall on both sides of the 1 KB and 4 KB boundaries (the fingerprint pads them)."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [
        a_payment(customer, loan, paid_at=start + timedelta(minutes=i), request_fingerprint="f" * pad)
        for i, pad in enumerate([64, 700, 1000, 1100, 2000, 3000, 4000, 64, 500, 800, 3500, 64])
    ]


async def test_a_record_payment_doubles_its_index_writes_on_local_only(tables: Tables) -> None:
    assert "TransactWriteItems doubles" in LOCAL_DIFFERENCES[0]
    repository = tables.payment_repository()
    for payment in payments_of_sizes():
        expected = units_per_call(RecordPayment(payment))

        units, _ = await measured(tables.payments, repository.create(payment))

        assert units == index_writes_doubled(expected), item_size(payment_item(payment))
        # the table's share is as DynamoDB charges it: payment and marker, each doubled
        assert units.write[TABLE] == expected.write[TABLE]
        assert units.write[BY_CUSTOMER] == 2 * expected.write[BY_CUSTOMER] > 0


async def test_a_copy_over_an_older_version_likewise(tables: Tables) -> None:
    repository = tables.payment_repository()
    for older in payments_of_sizes()[:4]:
        await repository.create(older)
        newer = dataclasses.replace(older.reversed_at(HOUR), request_fingerprint="g" * 1500)

        units, copied = await measured(tables.payments, repository.put_if_newer(newer))

        assert copied
        assert units == index_writes_doubled(units_per_call(CopyPayment(newer, previous=older)))


async def test_gets_and_a_reversal_are_charged_as_the_service_charges_them(tables: Tables) -> None:
    repository = tables.payment_repository()
    for payment in payments_of_sizes():
        await repository.create(payment)

        got, found = await measured(tables.payments, repository.get(payment.id))
        assert found == payment
        assert got == units_per_call(GetPayment(payment))

        reversal = ReversePayment(payment, at=HOUR)

        async def reverse(payment: Payment = payment, reversal: ReversePayment = reversal) -> bool:
            current = await repository.get(payment.id, for_write=True)
            assert current is not None
            return await repository.update(reversal.reversed(), expected_version=current.version)

        reversed_units, done = await measured(tables.payments, reverse())
        assert done
        assert reversed_units == units_per_call(reversal)

    missing, _ = await measured(tables.payments, repository.get(uuid.uuid4()))
    assert missing == units_per_call(GetPayment(None)) == Units(read={TABLE: 1.0})


async def test_a_history_page_is_one_query_of_the_index_charged_on_the_summed_entries(tables: Tables) -> None:
    repository = tables.payment_repository()
    customer, loan = uuid.uuid4(), uuid.uuid4()
    payments = payments_of_sizes(customer, loan) + payments_of_sizes(customer, loan)[:9]
    for payment in payments:
        await repository.create(payment)
    newest = sorted(payments, key=lambda p: (p.paid_at, p.id), reverse=True)

    for limit in (1, 5, 13, len(payments)):
        units, page = await measured(tables.payments, repository.list_for_customer(customer, None, None, None, limit))
        assert page == newest[:limit]
        assert units == units_per_call(HistoryPage(newest[:limit]))

    units, page = await measured(tables.payments, repository.list_for_loan(loan, None, 21))
    assert units == units_per_call(HistoryPage(newest[:21], index=BY_LOAN))
    assert units.read[BY_LOAN] > 1  # several 4 KB boundaries crossed, rounded once


def log_entries(service: str, count: int, trace: str) -> list[LogEntry]:
    return [
        LogEntry(
            id=uuid.uuid4(),
            time=HOUR + timedelta(seconds=i),
            service=service,
            level=LogLevel.INFO,
            message="m" * (40 if i % 5 else 1500),
            attributes={"route": "/v1/payments", "status": str(200 + i)},
            trace_id=trace if i % 2 else "",
            span_id=f"{i:016x}" if i % 2 else "",
        )
        for i in range(count)
    ]


async def test_log_writes_and_reads_are_charged_as_the_service_charges_them(tables: Tables) -> None:
    repository = tables.log_repository()
    trace = secrets.token_hex(16)
    entries = log_entries("payment", 60, trace)

    written, count = await measured(tables.logs, repository.write(LogBatch(uuid.uuid4(), entries)))
    assert count == 60
    assert written == units_per_call(WriteLogs(entries, LAYOUT))
    # the traced half (odd i) in by_trace: 30 entries, the 6 with a 1500-byte message (i = 5, 15, ...) 2 units each
    assert written.write[BY_TRACE] == 30 + 6
    newest = sorted(entries, key=lambda e: (e.time, e.id), reverse=True)

    for limit in (1, 7, 40, 60):
        query = repository.query("payment", HOUR, HOUR + timedelta(minutes=59), LogLevel.DEBUG, None, limit)
        units, found = await measured(tables.logs, query)
        assert [e.id for e in found] == [e.id for e in newest[:limit]]
        assert units == units_per_call(QueryLogsPage(newest[:limit], LAYOUT))

    units, found = await measured(tables.logs, repository.trace(trace, 100))
    assert len(found) == 30
    assert units == units_per_call(TraceLogsPage([e for e in entries if e.trace_id], LAYOUT))


async def test_a_read_of_nothing_costs_nothing_on_local(tables: Tables) -> None:
    assert "reads nothing reports 0" in LOCAL_DIFFERENCES[1]
    assert "not found reports 0" in LOCAL_DIFFERENCES[2]
    query = tables.log_repository().query("nobody", HOUR, HOUR + timedelta(minutes=59), LogLevel.DEBUG, None, 10)

    units, found = await measured(tables.logs, query)

    assert found == []
    assert units == Units()  # DynamoDB: one strongly consistent read's worth
    assert units_per_call(QueryLogsPage([], LAYOUT)) == Units(read={TABLE: 1.0})

    payments = payments_of_sizes()[:2]
    await tables.payment_repository().create(payments[0])
    await tables.payment_repository().create(payments[1])
    keys = [{"pk": payment_item(p)["pk"]} for p in payments] + [{"pk": {"S": str(uuid.uuid4())}}]
    consumed = Consumed()

    found_items = await batch_get(tables.client, tables.payments, keys, consumed=consumed)

    assert len(found_items) == 2
    sizes = [item_size(payment_item(p)) for p in payments]
    assert consumed.read == batch_get_read_units(sizes)  # the missing key: nothing on Local
    assert batch_get_read_units([*sizes, 0]) == consumed.read + 1  # DynamoDB: one unit for it


async def test_a_backfill_written_twice_rewrites_the_indexes_for_nothing_on_local(tables: Tables) -> None:
    assert "identical one charges its global secondary indexes nothing" in LOCAL_DIFFERENCES[3]
    payments = payments_of_sizes()
    items = [item for payment in payments for item in (payment_item(payment), marker_item(payment))]
    first, second = Consumed(), Consumed()

    await batch_write(tables.client, tables.payments, items, consumed=first)
    await batch_write(tables.client, tables.payments, items, consumed=second)

    assert first.write == units_per_call(BatchWrite(items, PAYMENT_TABLE)).write_total
    again = units_per_call(BatchWrite(items, PAYMENT_TABLE, previous=items))
    assert second.write == again.write[TABLE] < again.write_total


async def test_local_reports_sizes_without_the_storage_overhead(tables: Tables) -> None:
    assert "leaves out the 100 bytes" in LOCAL_DIFFERENCES[4]
    entries = log_entries("storage", 20, secrets.token_hex(16))
    await tables.log_repository().write(LogBatch(uuid.uuid4(), entries))

    table = (await tables.client.describe_table(TableName=tables.logs))["Table"]

    items = [LAYOUT.item(e) for e in entries]
    assert table.get("ItemCount") == 20
    assert table.get("TableSizeBytes") == sum(map(item_size, items))  # DynamoDB: 100 bytes more per item
    [index] = table.get("GlobalSecondaryIndexes", [])
    assert index.get("IndexName") == BY_TRACE
    assert index.get("IndexSizeBytes") == table.get("TableSizeBytes")  # though only the traced half is in it
    assert LOG_TABLE.indexes[0].name == BY_TRACE
