"""Capacity units as DynamoDB charges them: per item written, per item or per page read, per index entry changed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, Literal

# The developer guide's "read and write operations" (throughput settings) page: a write unit is a write of up to
# 1 KB, a read unit a strongly consistent read of up to 4 KB; sizes are rounded up to the next multiple.
WRITE_UNIT_BYTES: Final = 1024
READ_UNIT_BYTES: Final = 4096

Consistency = Literal["eventual", "strong", "transactional"]
# What one read unit's worth of data costs at each consistency, relative to a strongly consistent read: "an
# eventually consistent read ... one-half read unit", "a transactional read ... two read units".
_READ_FACTOR: Final = {"eventual": 0.5, "strong": 1.0, "transactional": 2.0}


def write_units(size: int, *, transactional: bool = False) -> int:
    """One unit per started 1 KB of the item written: a put (of an item replacing another: the larger of the two),
    an update (the larger of the item before and after), a delete (the item deleted); a BatchWriteItem rounds each
    item on its own. Twice that inside a transaction: "two underlying ... writes of every item in the transaction:
    one to prepare the transaction and one to commit" (the guide's capacity management for transactions)."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(size: int, *, consistency: Consistency = "strong") -> float:
    """A GetItem (or one item of a BatchGetItem): one unit per started 4 KB, strongly consistent; half that
    eventually consistent; twice that in a transaction. Reading an item that does not exist (size 0) still costs
    one unit's worth ("a read operation on an item that does not exist ... still consumes")."""
    return max(1, math.ceil(size / READ_UNIT_BYTES)) * _READ_FACTOR[consistency]


def batch_get_read_units(sizes: Iterable[int], *, consistency: Consistency = "strong") -> float:
    """BatchGetItem: "DynamoDB processes each item in the batch as an individual GetItem request", each item rounded
    up on its own (a 1.5 KB and a 6.5 KB item cost 4 KB + 8 KB). A key not found counts as size 0."""
    return sum(read_units(size, consistency=consistency) for size in sizes)


def query_read_units(sizes: Iterable[int], *, consistency: Consistency = "eventual") -> float:
    """Query: "all items returned are treated as a single read operation": their sizes summed (whole items, even
    when a projection or a filter returns less) and rounded up to 4 KB once per call; nothing read still costs one
    unit's worth. On a global secondary index the sizes are its entries' and the read is always eventually
    consistent ("global secondary indexes support eventually consistent reads")."""
    total = sum(sizes)
    return max(1, math.ceil(total / READ_UNIT_BYTES)) * _READ_FACTOR[consistency]


def scan_read_units(sizes: Iterable[int], *, consistency: Consistency = "eventual") -> float:
    """Scan: like a Query, on the items evaluated, "not the size of the items returned by the scan"."""
    return query_read_units(sizes, consistency=consistency)


def index_write_units(before: int | None, after: int | None, *, key_changed: bool) -> int:
    """Write units a global secondary index consumes when an item's entry in it goes from `before` to `after`
    bytes (None: no entry, e.g. the item lacks the index key), as the guide's GSI write capacity rules say: a new
    entry is one put, a gone entry one delete, an update that changes the index's key two writes (the old entry
    deleted, the new one put), one that changes only projected attributes one write, and an item in the index
    neither before nor after costs the index nothing. Each write rounded up to 1 KB of the entry.

    Never doubled for a transaction: a transaction's changes "start propagating to global secondary indexes" once
    it completes, outside its prepare and commit (DynamoDB Local doubles them: see toolkit.cost.operations)."""
    if before is None and after is None:
        return 0
    if before is None:
        assert after is not None
        return write_units(after)
    if after is None:
        return write_units(before)
    if key_changed:
        return write_units(before) + write_units(after)
    return write_units(max(before, after))
