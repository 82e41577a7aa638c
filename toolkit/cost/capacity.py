"""Capacity units as DynamoDB charges them: per item written, per item or per page read, per index entry changed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, Literal

WRITE_UNIT_BYTES: Final = 1024
READ_UNIT_BYTES: Final = 4096

Consistency = Literal["eventual", "strong", "transactional"]
# What one read unit's worth of data costs at each consistency, relative to a strongly consistent read.
_READ_FACTOR: Final = {"eventual": 0.5, "strong": 1.0, "transactional": 2.0}


def write_units(size: int, *, transactional: bool = False) -> int:
    """One unit per started 1 KB of the item written (a put, or an update: the larger of the item before and
    after; a delete: the item deleted); twice that inside a transaction."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return 2 * units if transactional else units


def read_units(size: int, *, consistency: Consistency = "strong") -> float:
    """A GetItem (or one item of a BatchGetItem): one unit per started 4 KB, strongly consistent; half that
    eventually consistent; twice that in a transaction."""
    return max(1, math.ceil(size / READ_UNIT_BYTES)) * _READ_FACTOR[consistency]


def batch_get_read_units(sizes: Iterable[int], *, consistency: Consistency = "strong") -> float:
    """BatchGetItem: each item rounded up on its own."""
    return sum(read_units(size, consistency=consistency) for size in sizes)


def query_read_units(sizes: Iterable[int], *, consistency: Consistency = "eventual") -> float:
    """Query (and Scan): the items read are summed and rounded up to 4 KB once per call; an empty result still
    costs one unit's worth. (A query of a global secondary index is always eventually consistent.)"""
    total = sum(sizes)
    return max(1, math.ceil(total / READ_UNIT_BYTES)) * _READ_FACTOR[consistency]


def index_write_units(before: int | None, after: int | None, *, key_changed: bool) -> int:
    """Write units a global secondary index consumes when an item's entry in it goes from `before` to `after`
    bytes (None: no entry, e.g. the item lacks the index key). A new entry is a put, a gone entry a delete, and
    an update that changes the index's key is both: the old entry deleted, the new one put."""
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
