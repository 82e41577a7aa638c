"""DynamoDB item sizes and capacity units, worked through the developer guide's own examples and loanbook's calls."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from services.logging.adapters.dynamodb import BY_TRACE, LOG_TABLE, LogTableLayout
from services.logging.domain import LogEntry, LogLevel
from services.payment.adapters.dynamodb import BY_CUSTOMER, BY_LOAN, PAYMENT_TABLE, marker_item, payment_item
from services.payment.domain import Payment
from tests.support.payments import a_payment
from toolkit.cost.capacity import (
    batch_get_read_units,
    index_write_units,
    query_read_units,
    read_units,
    scan_read_units,
    write_units,
)
from toolkit.cost.operations import (
    TABLE,
    BatchWrite,
    CopyPayment,
    GetPayment,
    HistoryPage,
    QueryLogsPage,
    RecordPayment,
    ReversePayment,
    ScanPage,
    Storage,
    TraceLogsPage,
    Units,
    WriteLogs,
    item_write,
    payment_storage,
    storage,
    units_per_call,
)
from toolkit.cost.sizes import item_size, number_size, projected, value_size

KB = 1024
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)

# --- sizes -------------------------------------------------------------------------------------------------------


def test_a_string_is_its_name_and_its_value_in_utf8_bytes() -> None:
    assert item_size({"name": {"S": "Alice"}}) == 4 + 5
    assert item_size({"é": {"S": "€uro"}}) == 2 + (3 + 3)  # é is 2 bytes, € 3


@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("5", 2),  # one base-100 digit pair and the exponent byte
        ("12", 2),
        ("123", 3),  # 01|23
        ("12345", 4),  # 01|23|45
        ("100", 2),  # trailing zero pairs trimmed: 01
        ("1000", 2),  # 10
        ("00012", 2),  # leading zeros trimmed
        ("1.5", 3),  # aligned at the decimal point: 01|50
        ("1.234", 4),  # 01|23|40
        ("12.50", 3),  # 12|50
        ("0.05", 2),  # .05
        ("0.001", 2),  # .00|10, the zero pair trimmed
        ("-12", 3),  # a negative number takes one byte more
        ("-12.50", 4),
        ("0", 1),
        ("1E-130", 2),
        ("123456789012345678901234567890", 16),  # 15 pairs: "1 byte per two significant digits, plus 1 byte"
        ("12345678901234567890123456789012345678", 20),  # 38 digits, the most DynamoDB takes
    ],
)
def test_a_number_takes_a_byte_per_digit_pair_plus_one(number: str, size: int) -> None:
    assert number_size(number) == size
    assert item_size({"n": {"N": number}}) == 1 + size


def test_binary_null_and_boolean_values() -> None:
    assert value_size({"B": b"\x00\x01\x02\x03"}) == 4  # raw bytes
    assert value_size({"B": "AAECAw=="}) == 4  # the same bytes as base64 text on the wire
    assert value_size({"NULL": True}) == 1
    assert value_size({"BOOL": False}) == 1


def test_a_map_or_list_costs_3_bytes_and_1_per_element() -> None:
    assert value_size({"M": {}}) == 3
    assert value_size({"L": []}) == 3
    # "ab": "cd" is 2 + 2 + 1, "e": "fgh" is 1 + 3 + 1
    assert value_size({"M": {"ab": {"S": "cd"}, "e": {"S": "fgh"}}}) == 3 + 5 + 5
    # "ab" 2 + 1, 12 is 2 + 1, false 1 + 1
    assert value_size({"L": [{"S": "ab"}, {"N": "12"}, {"BOOL": False}]}) == 3 + 3 + 3 + 2
    nested = {"M": {"x": {"L": [{"S": "a"}, {"M": {"k": {"S": "v"}}}]}}}
    inner_map = 3 + (1 + 1 + 1)
    inner_list = 3 + (1 + 1) + (inner_map + 1)
    assert value_size(nested) == 3 + (1 + inner_list + 1)


def test_sets_are_their_elements() -> None:
    assert value_size({"SS": ["ab", "cde"]}) == 5
    assert value_size({"NS": ["12", "345"]}) == 2 + 3


def test_an_index_entry_holds_the_keys_and_what_it_projects_and_a_sparse_index_none() -> None:
    item = {"pk": {"S": "p"}, "owner": {"S": "o"}, "sk": {"S": "s"}, "note": {"S": "n"}, "big": {"S": "b" * 100}}
    assert projected(item, ["pk"], ["owner", "sk"], "ALL") == item
    assert projected(item, ["pk"], ["owner", "sk"], "KEYS_ONLY") == {k: item[k] for k in ("pk", "owner", "sk")}
    assert projected(item, ["pk"], ["owner", "sk"], ["note"]) == {k: item[k] for k in ("pk", "owner", "sk", "note")}
    assert projected({"pk": {"S": "p"}}, ["pk"], ["owner", "sk"], "ALL") is None


# --- capacity units ----------------------------------------------------------------------------------------------


def test_writes_are_charged_per_started_kilobyte_of_each_item() -> None:
    assert write_units(500) == 1  # "writing a 500-byte item consumes the same throughput as writing a 1 KB item"
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(int(1.6 * KB)) == 2  # "an item of 1.6 KB, DynamoDB rounds the item size up to 2 KB"
    # "if BatchWriteItem writes a 500 byte item and a 3.5 KB item, DynamoDB calculates the size as 5 KB"
    assert write_units(500) + write_units(int(3.5 * KB)) == 5


def test_a_transactional_write_costs_twice() -> None:
    # "each transaction writes three 500-byte items ... you would need to provision six WCUs"
    assert sum(write_units(500, transactional=True) for _ in range(3)) == 6
    assert write_units(1025, transactional=True) == 4


def test_reads_are_charged_per_started_4_kb_by_consistency() -> None:
    assert read_units(3500) == 1  # "reading a 3,500-byte item consumes the same throughput as reading a 4 KB item"
    # "if your item size is 8 KB, you require 2 read units ... eventually consistent, 1 ... transactional, 4"
    assert read_units(8 * KB, consistency="strong") == 2
    assert read_units(8 * KB, consistency="eventual") == 1
    assert read_units(8 * KB, consistency="transactional") == 4
    assert read_units(10 * KB) == 3  # "an item of 10 KB, DynamoDB rounds the item size to 12 KB"
    # "a read operation on an item that does not exist ... strongly consistent one, eventually consistent 0.5"
    assert read_units(0, consistency="strong") == 1
    assert read_units(0, consistency="eventual") == 0.5


def test_a_batch_get_rounds_each_item_and_a_query_the_sum_once() -> None:
    # "if BatchGetItem reads a 1.5 KB item and a 6.5 KB item, DynamoDB calculates the size as 12 KB"
    assert batch_get_read_units([int(1.5 * KB), int(6.5 * KB)]) == 3
    # the same two items in one Query: 8 KB
    assert query_read_units([int(1.5 * KB), int(6.5 * KB)], consistency="strong") == 2
    # "your query returns 10 items whose combined size is 40.8 KB. DynamoDB rounds the item size ... to 44 KB"
    assert query_read_units([int(4.08 * KB)] * 10, consistency="strong") == 11
    # "If a query returns 1500 items of 64 bytes each, the cumulative size is 96 KB"
    assert query_read_units([64] * 1500, consistency="strong") == 24
    # "8 items ... 2000 bytes x 8 items = 16,000 bytes ... eventually consistent, 0.5 x (16 KB / 4 KB), 2"
    assert query_read_units([2000] * 8, consistency="eventual") == 2
    assert query_read_units([], consistency="eventual") == 0.5
    assert scan_read_units([3000, 3000], consistency="strong") == 2


def test_an_index_write_is_charged_on_the_entry_and_a_key_change_twice() -> None:
    assert index_write_units(None, 300, key_changed=False) == 1  # a new entry: one put
    assert index_write_units(None, 1500, key_changed=False) == 2  # larger entries take more units
    assert index_write_units(300, None, key_changed=False) == 1  # the index key removed: one delete
    assert index_write_units(None, None, key_changed=False) == 0  # never in the index: no cost
    assert index_write_units(300, 320, key_changed=False) == 1  # projected attributes changed: one write
    assert index_write_units(300, 320, key_changed=True) == 2  # key A -> B: delete A and put B
    assert index_write_units(1500, 300, key_changed=True) == 3


# --- loanbook's calls --------------------------------------------------------------------------------------------


def payment_sizes(payment: Payment) -> tuple[int, int]:
    return item_size(payment_item(payment)), item_size(marker_item(payment))


def test_a_record_payment_is_two_transactional_puts_and_an_entry_in_each_index() -> None:
    payment = a_payment(paid_at=T0)
    item, marker = payment_sizes(payment)
    # so each is one unit before the transaction doubles it
    assert item < KB
    assert marker < KB

    units = units_per_call(RecordPayment(payment))

    # payment and marker, doubled; the marker lacks the index keys, so only the payment enters the indexes
    assert units == Units(write={TABLE: 2 + 2, BY_CUSTOMER: 1, BY_LOAN: 1})
    assert units.read_total == 0
    assert units.write_total == 6


def test_a_large_payment_is_charged_per_kilobyte_in_the_table_and_in_each_index() -> None:
    payment = a_payment(paid_at=T0, request_fingerprint="f" * 1200)
    assert KB < payment_sizes(payment)[0] <= 2 * KB

    assert units_per_call(RecordPayment(payment)).write == {TABLE: 4 + 2, BY_CUSTOMER: 2, BY_LOAN: 2}


def test_a_copy_over_an_older_version_replaces_both_items() -> None:
    older = a_payment(paid_at=T0)
    newer = older.reversed_at(T0)

    units = units_per_call(CopyPayment(newer, previous=older))

    # the table doubled for both puts; each index: the entry updated in place (its key is unchanged), one write
    assert units.write == {TABLE: 4, BY_CUSTOMER: 1, BY_LOAN: 1}


def test_a_reverse_payment_reads_the_payment_and_replaces_it() -> None:
    payment = a_payment(paid_at=T0)

    units = units_per_call(ReversePayment(payment))

    assert units.read == {TABLE: 1.0}  # strongly consistent GetItem of an item under 4 KB
    assert units.write == {TABLE: 1, BY_CUSTOMER: 1, BY_LOAN: 1}  # not transactional; keys unchanged


def test_an_update_that_moves_an_indexed_key_is_charged_twice_on_that_index() -> None:
    payment = a_payment(paid_at=T0)
    moved = dataclasses.replace(payment, paid_at=datetime(2026, 4, 1, tzinfo=UTC))  # paid_sk is both indexes' key
    other_loan = dataclasses.replace(payment, loan_id=uuid.uuid4())  # by_loan's partition key only

    assert item_write(payment_item(payment), payment_item(moved), PAYMENT_TABLE).write == {
        TABLE: 1,
        BY_CUSTOMER: 2,
        BY_LOAN: 2,
    }
    assert item_write(payment_item(payment), payment_item(other_loan), PAYMENT_TABLE).write == {
        TABLE: 1,
        BY_CUSTOMER: 1,
        BY_LOAN: 2,
    }


def test_a_get_payment_is_one_strongly_consistent_read_even_when_missing() -> None:
    assert units_per_call(GetPayment(a_payment())) == Units(read={TABLE: 1.0})
    assert units_per_call(GetPayment(None)) == Units(read={TABLE: 1.0})


def test_a_history_page_is_one_query_of_the_index_summed_once() -> None:
    customer = uuid.uuid4()
    page = [a_payment(customer_id=customer) for _ in range(21)]  # a page of 20 and the one more asked for
    total = sum(item_size(payment_item(payment)) for payment in page)  # projection ALL: entries are whole items

    units = units_per_call(HistoryPage(page))

    assert units == Units(read={BY_CUSTOMER: -(-total // (4 * KB)) * 0.5})
    assert units.read_total < 21 * 0.5  # far less than 21 GetItems would cost
    assert units_per_call(HistoryPage(page, index=BY_LOAN)).read == {BY_LOAN: units.read[BY_CUSTOMER]}


def entry(trace: str = "", message: str = "payment recorded") -> LogEntry:
    return LogEntry(
        id=uuid.uuid4(),
        time=T0,
        service="payment",
        level=LogLevel.INFO,
        message=message,
        attributes={"route": "/v1/payments"},
        trace_id=trace,
        span_id="0" * 16 if trace else "",
    )


def test_a_log_batch_writes_each_entry_and_the_trace_index_only_for_traced_ones() -> None:
    entries = [entry("a" * 32), entry(), entry("b" * 32), entry(message="x" * 1100)]

    units = units_per_call(WriteLogs(entries))

    assert units.write == {TABLE: 1 + 1 + 1 + 2, BY_TRACE: 2}


def test_log_reads_are_queries_summed_once() -> None:
    layout = LogTableLayout()
    entries = [entry("c" * 32) for _ in range(100)]
    total = sum(item_size(layout.item(e)) for e in entries)

    assert units_per_call(QueryLogsPage(entries)).read == {TABLE: float(-(-total // (4 * KB)))}  # strong
    assert units_per_call(TraceLogsPage(entries)).read == {BY_TRACE: -(-total // (4 * KB)) * 0.5}
    assert units_per_call(QueryLogsPage([])).read == {TABLE: 1.0}


def test_the_toolkits_batch_write_and_scan() -> None:
    payments = [a_payment() for _ in range(3)]
    items = [item for payment in payments for item in (payment_item(payment), marker_item(payment))]

    assert units_per_call(BatchWrite(items, PAYMENT_TABLE)).write == {TABLE: 6, BY_CUSTOMER: 3, BY_LOAN: 3}
    # written again unchanged: the table pays again, and each index entry is rewritten in place
    again = units_per_call(BatchWrite(items, PAYMENT_TABLE, previous=items))
    assert again.write == {TABLE: 6, BY_CUSTOMER: 3, BY_LOAN: 3}
    assert units_per_call(ScanPage(items)).read == {TABLE: float(-(-sum(map(item_size, items)) // (4 * KB)))}


def test_storage_adds_100_bytes_per_item_and_per_index_entry() -> None:
    payment = a_payment()
    item, marker = payment_sizes(payment)

    assert storage(payment_item(payment), PAYMENT_TABLE) == Storage(
        item + 100, {BY_CUSTOMER: item + 100, BY_LOAN: item + 100}
    )
    assert storage(marker_item(payment), PAYMENT_TABLE) == Storage(marker + 100, {})
    assert payment_storage(payment) == Storage(item + marker + 200, {BY_CUSTOMER: item + 100, BY_LOAN: item + 100})
    assert payment_storage(payment).total == item + marker + 200 + 2 * (item + 100)
    untraced = LogTableLayout().item(entry())
    assert storage(untraced, LOG_TABLE) == Storage(item_size(untraced) + 100, {})


def test_units_add_up_and_scale() -> None:
    a = Units(read={TABLE: 1.0}, write={TABLE: 2.0, BY_CUSTOMER: 1.0})
    b = Units(read={BY_CUSTOMER: 0.5}, write={TABLE: 1.0})

    assert a + b == Units(read={TABLE: 1.0, BY_CUSTOMER: 0.5}, write={TABLE: 3.0, BY_CUSTOMER: 1.0})
    assert (a + b).scaled(10).write_total == 40.0
