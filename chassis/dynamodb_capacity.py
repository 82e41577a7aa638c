"""What DynamoDB calls consumed and touched: on the current span (aws.dynamodb.*) and as a capacity counter."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

import orjson
from opentelemetry import metrics, trace

# Every DynamoDB call of the adapters asks for this: per table and per index, so a GSI's share is visible.
RETURN_CONSUMED_CAPACITY: Final = "INDEXES"

ATTR_TABLE_NAMES: Final = "aws.dynamodb.table_names"
ATTR_INDEX_NAME: Final = "aws.dynamodb.index_name"
ATTR_CONSUMED_CAPACITY: Final = "aws.dynamodb.consumed_capacity"

READ_OPERATIONS: Final = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
# One span may stand for many calls (a log query over hours and shards): enough entries to see the pattern.
MAX_ENTRIES_PER_SPAN: Final = 32

_meter = metrics.get_meter("loanbook.dynamodb")
consumed_capacity = _meter.create_counter(
    "loanbook.dynamodb.consumed_capacity",
    unit="{capacity_unit}",
    description="Capacity units DynamoDB reports consumed, by table, index (empty: the base table) and API",
)

# The consumed capacity already put on the span that is current where `collected_per_span` was entered; shared by
# the tasks that span's call fans out to (they copy the context, and with it this list).
_collected: ContextVar[list[str] | None] = ContextVar("loanbook_dynamodb_capacity", default=None)


@contextmanager
def collected_per_span() -> Iterator[None]:
    """Within it, every call's consumed capacity adds to the current span's attribute instead of replacing it."""
    token = _collected.set([])
    try:
        yield
    finally:
        _collected.reset(token)


def describe_call(table: str, index: str | None = None) -> None:
    """Names the table (and index) a DynamoDB call goes to on the current span (the store call's span)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(ATTR_TABLE_NAMES, (table,))
    if index:
        span.set_attribute(ATTR_INDEX_NAME, index)


def record_consumed(operation: str, response: Mapping[str, Any]) -> None:
    """Counts the capacity `response` reports (`operation`: the DynamoDB API, e.g. "Query") and puts it on the
    current span. Only capacity figures and names are read: never an item."""
    consumed = response.get("ConsumedCapacity")
    if not consumed:
        return
    entries: list[Mapping[str, Any]] = consumed if isinstance(consumed, list) else [consumed]
    kind = "read" if operation in READ_OPERATIONS else "write"
    for entry in entries:
        table = entry.get("TableName", "")
        for index, units in _units_by_index(entry):
            if units:
                consumed_capacity.add(
                    units,
                    {
                        "aws.dynamodb.table_name": table,
                        "aws.dynamodb.index_name": index,
                        "db.operation.name": operation,
                        "loanbook.capacity.kind": kind,
                    },
                )
    span = trace.get_current_span()
    if not span.is_recording():
        return
    serialized = [orjson.dumps(entry).decode() for entry in entries]
    collected = _collected.get()
    if collected is None:
        span.set_attribute(ATTR_CONSUMED_CAPACITY, serialized[:MAX_ENTRIES_PER_SPAN])
        return
    room = MAX_ENTRIES_PER_SPAN - len(collected)
    if room > 0:
        collected.extend(serialized[:room])
        span.set_attribute(ATTR_CONSUMED_CAPACITY, collected)


def _units_by_index(entry: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """(index name, capacity units) of one ConsumedCapacity entry: "" for the base table, then each index."""
    indexes = {**entry.get("GlobalSecondaryIndexes", {}), **entry.get("LocalSecondaryIndexes", {})}
    table = entry.get("Table")
    if table is None and not indexes:  # TOTAL only: all of it is the table's
        yield "", float(entry.get("CapacityUnits", 0.0))
        return
    if table is not None:
        yield "", float(table.get("CapacityUnits", 0.0))
    for name, units in indexes.items():
        yield name, float(units.get("CapacityUnits", 0.0))
