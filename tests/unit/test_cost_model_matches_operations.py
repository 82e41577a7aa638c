"""The cost model's units per call (averaged item shapes) agree with operations.py's for the project's own calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.logging.adapters.dynamodb import BY_TRACE, LogTableLayout
from services.payment.adapters.dynamodb import BY_CUSTOMER, BY_LOAN, marker_item, payment_item
from tests.support.logs import an_entry
from tests.support.payments import a_payment
from toolkit.cost.inputs import CallShape, item_shape, log_operations, payment_operations
from toolkit.cost.model import index_read_units, index_write_units_per_entry
from toolkit.cost.operations import TABLE, GetPayment, HistoryPage, RecordPayment, WriteLogs, units_per_call

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def test_a_recorded_payment_costs_the_model_what_operations_say() -> None:
    payment = a_payment()
    shape = item_shape("payments", [payment_item(payment), marker_item(payment)], "test")
    [create] = [op for op in payment_operations({"create": 1}, shape, CallShape()) if op.name == "create"]
    expected = units_per_call(RecordPayment(payment))

    assert create.write_units == expected.write[TABLE]
    for index in (BY_CUSTOMER, BY_LOAN):
        model = create.index_entries_written[index] * index_write_units_per_entry(shape.index_bytes[index])
        assert model == expected.write[index], index


def test_a_get_and_a_history_page_cost_the_model_what_operations_say() -> None:
    customer = a_payment().customer_id
    payments = [a_payment(customer_id=customer, paid_at=T0 + timedelta(minutes=i)) for i in range(50)]
    items = [item for payment in payments for item in (payment_item(payment), marker_item(payment))]
    shape = item_shape("payments", items, "test")
    operations = {op.name: op for op in payment_operations({}, shape, CallShape(history_page=50))}

    assert operations["get"].read_units == units_per_call(GetPayment(payments[0])).read[TABLE]
    page = operations["list_for_customer"].index_entries_read[BY_CUSTOMER]
    model = index_read_units(page, shape.index_bytes[BY_CUSTOMER])
    assert model == units_per_call(HistoryPage(payments)).read[BY_CUSTOMER]


def test_a_log_batch_costs_the_model_what_operations_say() -> None:
    entries = [an_entry("payment", T0 + timedelta(seconds=i), trace_id="ab" * 16) for i in range(100)]
    layout = LogTableLayout()
    shape = item_shape("logs", [layout.item(entry) for entry in entries], "test")
    [write] = [op for op in log_operations({"write": 1}, shape, CallShape(log_batch=100)) if op.name == "write"]
    expected = units_per_call(WriteLogs(entries, layout))

    assert write.write_units == expected.write[TABLE]
    model = write.index_entries_written[BY_TRACE] * index_write_units_per_entry(shape.index_bytes[BY_TRACE])
    assert model == expected.write[BY_TRACE]
