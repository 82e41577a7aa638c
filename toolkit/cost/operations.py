"""What each of loanbook's own DynamoDB calls consumes, from the items the adapters write and read.

The interface the cost model uses:

    units_per_call(call) -> Units         capacity units of one call (a dataclass below) on the real DynamoDB
    storage(item, design) -> Storage      bytes an item takes in its table and in each index, overhead included

A call is built from domain values and mapped by the adapters' own item functions (payment_item, marker_item,
LogTableLayout.item) onto the designs (PAYMENT_TABLE, LOG_TABLE), so a change to an item or an index shows here:

    RecordPayment(payment)               TransactWriteItems: payment and idempotency marker puts
    CopyPayment(payment, previous)       put_if_newer, the same transaction: every payment write's DynamoDB side
                                         in the dual-writing stages (the relay's or the inline copy)
    ReversePayment(payment)              dynamo_only: GetItem (strong) + PutItem replacing the item
    GetPayment(payment)                  GetItem, strongly consistent
    HistoryPage(payments, index)         Query of by_customer (or by_loan), eventually consistent
    WriteLogs(entries, layout)           BatchWriteItem of the entries (chunks of 25 cost what one call would)
    QueryLogsPage(entries, layout)       Query of one hour's shard, strongly consistent
    TraceLogsPage(entries, layout)       Query of by_trace, eventually consistent
    BatchWrite(items, design)            the toolkit's BatchWriteItem (backfill, repair)
    ScanPage(items)                      the toolkit's Scan page, strongly consistent (verify, reverse sync)

`Units` holds read and write units per target: "" for the base table, else the index's name. Items read are the
items a call reads, not only those it returns (a Query's Limit + 1, items a filter drops). The figures follow the
developer guide's rules (toolkit.cost.capacity, toolkit.cost.sizes); DynamoDB Local reports some of them
differently: LOCAL_DIFFERENCES, checked by tests/integration/test_cost_capacity_local.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from chassis.dynamodb_tables import TableDesign
from services.logging.adapters.dynamodb import BY_TRACE, LOG_TABLE, LogTableLayout
from services.payment.adapters.dynamodb import BY_CUSTOMER, PAYMENT_TABLE, marker_item, payment_item
from toolkit.cost.capacity import (
    index_write_units,
    query_read_units,
    read_units,
    scan_read_units,
    write_units,
)
from toolkit.cost.sizes import STORAGE_OVERHEAD_BYTES, item_size, projected

if TYPE_CHECKING:
    from services.logging.domain import LogEntry
    from services.payment.domain import Payment

Item = Mapping[str, Mapping[str, Any]]
TABLE: Final = ""  # the base table's target name in Units (an index's is its name)

# How DynamoDB Local (3.x, the tests' and devstack's) reports capacity where it differs from the rules above;
# found by experiment (tests/integration/test_cost_capacity_local.py asserts each one).
LOCAL_DIFFERENCES: Final = (
    "A TransactWriteItems doubles the write units of the global secondary index entries it changes as well as the "
    "table's; DynamoDB doubles only the table's (the index entries change after the transaction commits).",
    "A Query or Scan that reads nothing reports 0 units; DynamoDB charges a read of nothing one unit's worth (0.5 "
    "eventually consistent, 1 strongly consistent).",
    "A BatchGetItem key that is not found reports 0 units; DynamoDB charges it like a GetItem of nothing (1 unit "
    "strongly consistent). A GetItem of a missing key reports 1 unit on Local too.",
    "A PutItem that replaces an item with an identical one charges its global secondary indexes nothing.",
    "DescribeTable's TableSizeBytes leaves out the 100 bytes per item of storage overhead, and each index's "
    "IndexSizeBytes repeats the table's size: storage cannot be checked on Local.",
)


@dataclass(frozen=True)
class Units:
    """Capacity units by target ("" the base table, else an index's name), read and written."""

    read: Mapping[str, float] = field(default_factory=dict)
    write: Mapping[str, float] = field(default_factory=dict)

    @property
    def read_total(self) -> float:
        return sum(self.read.values())

    @property
    def write_total(self) -> float:
        return sum(self.write.values())

    def __add__(self, other: Units) -> Units:
        return Units(_summed(self.read, other.read), _summed(self.write, other.write))

    def scaled(self, factor: float) -> Units:
        """These units `factor` times (e.g. per call -> per month)."""
        return Units(
            {target: units * factor for target, units in self.read.items()},
            {target: units * factor for target, units in self.write.items()},
        )


def _summed(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    return {target: a.get(target, 0.0) + b.get(target, 0.0) for target in {**a, **b}}


@dataclass(frozen=True)
class Storage:
    """Bytes an item takes: in the base table, and in each index holding an entry for it (overhead included)."""

    table: int
    indexes: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.table + sum(self.indexes.values())


def _entries(item: Item | None, design: TableDesign) -> dict[str, Item | None]:
    """The item's entry in each index of the design (None: the item lacks that index's key); every index projects
    ALL (chassis.dynamodb_tables.Index)."""
    table_key = [name for name in (design.partition_key, design.sort_key) if name]
    return {
        index.name: None
        if item is None
        else projected(item, table_key, [name for name in (index.partition_key, index.sort_key) if name], "ALL")
        for index in design.indexes
    }


def _size(item: Item | None) -> int | None:
    return None if item is None else item_size(item)


def item_write(before: Item | None, after: Item | None, design: TableDesign, *, transactional: bool = False) -> Units:
    """One item written (a put over `before`, or a delete when `after` is None): the table charged on the larger of
    the two, each index on its entry's change."""
    sizes = [size for size in (_size(before), _size(after)) if size is not None]
    units: dict[str, float] = {TABLE: float(write_units(max(sizes, default=0), transactional=transactional))}
    old, new = _entries(before, design), _entries(after, design)
    for index in design.indexes:
        was, will = old[index.name], new[index.name]
        keys = [name for name in (index.partition_key, index.sort_key) if name]
        moved = was is not None and will is not None and any(was[name] != will[name] for name in keys)
        cost = index_write_units(_size(was), _size(will), key_changed=moved)
        if cost:
            units[index.name] = float(cost)
    return Units(write=units)


def storage(item: Item, design: TableDesign) -> Storage:
    """The item's storage in bytes: its size plus the per-item overhead in the table, and likewise its entry in each
    index that holds one (the guide's GSI storage considerations: keys, projected attributes, 100 bytes)."""
    entries = _entries(item, design)
    return Storage(
        item_size(item) + STORAGE_OVERHEAD_BYTES,
        {name: item_size(entry) + STORAGE_OVERHEAD_BYTES for name, entry in entries.items() if entry is not None},
    )


def payment_storage(payment: Payment) -> Storage:
    """One payment's storage: its item and its idempotency marker, and its entries in both indexes."""
    item, marker = storage(payment_item(payment), PAYMENT_TABLE), storage(marker_item(payment), PAYMENT_TABLE)
    return Storage(item.table + marker.table, _summed_ints(item.indexes, marker.indexes))


def _summed_ints(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {target: a.get(target, 0) + b.get(target, 0) for target in {**a, **b}}


# --- the calls ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordPayment:
    """A RecordPayment that creates the payment: one TransactWriteItems putting the payment and its marker."""

    payment: Payment

    def units(self) -> Units:
        return CopyPayment(self.payment).units()


@dataclass(frozen=True)
class CopyPayment:
    """put_if_newer: the payment and its marker put in one TransactWriteItems, over `previous` if DynamoDB holds an
    older version (the marker is rewritten as it was)."""

    payment: Payment
    previous: Payment | None = None

    def units(self) -> Units:
        before = None if self.previous is None else payment_item(self.previous)
        marker_before = None if self.previous is None else marker_item(self.previous)
        return _transactional(before, payment_item(self.payment), PAYMENT_TABLE) + _transactional(
            marker_before, marker_item(self.payment), PAYMENT_TABLE
        )


def _transactional(before: Item | None, after: Item, design: TableDesign) -> Units:
    """One put of a transaction: the table's units doubled, the indexes' not (see capacity.index_write_units)."""
    table = item_write(before, after, design, transactional=True)
    indexes = item_write(before, after, design)
    return Units(write={**indexes.write, TABLE: table.write[TABLE]})


@dataclass(frozen=True)
class ReversePayment:
    """A ReversePayment in dynamo_only: the payment read for the write (strongly consistent GetItem), then a
    conditional PutItem of the reversed payment over it. (In the stages before, DynamoDB only sees a CopyPayment.)"""

    payment: Payment  # the SETTLED payment as stored
    at: datetime | None = None  # when it is reversed; the item's size does not depend on it

    def reversed(self) -> Payment:
        return self.payment.reversed_at(self.at or self.payment.updated_at)

    def units(self) -> Units:
        stored = payment_item(self.payment)
        read = Units(read={TABLE: read_units(item_size(stored), consistency="strong")})
        return read + item_write(stored, payment_item(self.reversed()), PAYMENT_TABLE)


@dataclass(frozen=True)
class GetPayment:
    """A GetPayment: one strongly consistent GetItem of the payment (None: a payment that does not exist)."""

    payment: Payment | None

    def units(self) -> Units:
        size = 0 if self.payment is None else item_size(payment_item(self.payment))
        return Units(read={TABLE: read_units(size, consistency="strong")})


@dataclass(frozen=True)
class HistoryPage:
    """One Query of a payment index (a customer's or a loan's history): the payments it reads, i.e. the page and the
    one more item the use case asks for to know whether another page follows."""

    payments: Sequence[Payment]
    index: str = BY_CUSTOMER

    def units(self) -> Units:
        entries = _index_entries((payment_item(payment) for payment in self.payments), PAYMENT_TABLE, self.index)
        return Units(read={self.index: query_read_units(entries, consistency="eventual")})


def _index_entries(items: Iterable[Item], design: TableDesign, index: str) -> list[int]:
    sizes = []
    for item in items:
        entry = _entries(item, design)[index]
        if entry is not None:
            sizes.append(item_size(entry))
    return sizes


@dataclass(frozen=True)
class WriteLogs:
    """A log batch written: BatchWriteItem puts of every entry (in chunks of 25: each item is charged on its own,
    so the chunking changes nothing), and the by_trace entry of each entry with a trace."""

    entries: Sequence[LogEntry]
    layout: LogTableLayout = field(default_factory=LogTableLayout)

    def units(self) -> Units:
        return BatchWrite([self.layout.item(entry) for entry in self.entries], LOG_TABLE).units()


@dataclass(frozen=True)
class QueryLogsPage:
    """One Query of a service's hour shard, strongly consistent (read-your-writes): the entries it reads, those
    a level filter drops included."""

    entries: Sequence[LogEntry]
    layout: LogTableLayout = field(default_factory=LogTableLayout)

    def units(self) -> Units:
        sizes = [item_size(self.layout.item(entry)) for entry in self.entries]
        return Units(read={TABLE: query_read_units(sizes, consistency="strong")})


@dataclass(frozen=True)
class TraceLogsPage:
    """One Query of by_trace (a trace's entries across services), eventually consistent."""

    entries: Sequence[LogEntry]
    layout: LogTableLayout = field(default_factory=LogTableLayout)

    def units(self) -> Units:
        sizes = _index_entries((self.layout.item(entry) for entry in self.entries), LOG_TABLE, BY_TRACE)
        return Units(read={BY_TRACE: query_read_units(sizes, consistency="eventual")})


@dataclass(frozen=True)
class BatchWrite:
    """BatchWriteItem puts of these items into a table (new items; `previous`: what each replaced, if anything)."""

    items: Sequence[Item]
    design: TableDesign
    previous: Sequence[Item | None] = ()

    def units(self) -> Units:
        before = list(self.previous) or [None] * len(self.items)
        total = Units()
        for old, new in zip(before, self.items, strict=True):
            total += item_write(old, new, self.design)
        return total


@dataclass(frozen=True)
class ScanPage:
    """One strongly consistent Scan page: charged on the whole items it evaluated, whatever it projects."""

    items: Sequence[Item]

    def units(self) -> Units:
        return Units(read={TABLE: scan_read_units(map(item_size, self.items), consistency="strong")})


Call = (
    RecordPayment
    | CopyPayment
    | ReversePayment
    | GetPayment
    | HistoryPage
    | WriteLogs
    | QueryLogsPage
    | TraceLogsPage
    | BatchWrite
    | ScanPage
)


def units_per_call(call: Call) -> Units:
    """The capacity units one call consumes on DynamoDB (the service, not DynamoDB Local: LOCAL_DIFFERENCES)."""
    return call.units()
