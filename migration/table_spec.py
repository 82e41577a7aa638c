"""A migrated table as the toolkit works through it: rows read in keyset order, mapped to DynamoDB items and back.

Each service fills it in for its own table (services/*/table_spec.py); the toolkit reads those (toolkit/specs.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef

    Item = dict[str, AttributeValueTypeDef]
else:
    Item = dict

Executor = asyncpg.Connection | asyncpg.Pool | asyncpg.pool.PoolConnectionProxy


# A row's key as text, in key column order: what checkpoints store and keyset queries take back.
Key = tuple[str, ...]


# An item's primary key attribute values, e.g. ("<payment id>",) or ("<pk>", "<sk>").
ItemKey = tuple[str, ...]


@dataclass(frozen=True)
class KeyColumn:
    name: str
    sql_type: str


class TableSpec(ABC):
    """One migrated table: where its rows are, their key, and the DynamoDB items a row becomes.

    Keyset reads only: every page is `key > last key ORDER BY key LIMIT n`, one index range scan, so memory and
    time per page stay constant whatever the table's size.
    """

    name: str
    source: str  # schema-qualified PostgreSQL table
    key_columns: tuple[KeyColumn, ...]
    key_attributes: tuple[str, ...]  # the DynamoDB table's primary key attributes
    scan_attributes: tuple[str, ...] = ()  # what `ignored` needs besides the key, read by the extras scan
    # Payments change after they are written (status, version): a backfill holds FOR SHARE on the rows it copies
    # until DynamoDB has them, so no live write can reach DynamoDB in between with a newer version that the copy
    # would then overwrite. Log entries never change: copying one twice writes the same item.
    lock_rows: bool

    # --- PostgreSQL side ----------------------------------------------------------------------------------

    def row_filter(self) -> tuple[str, list[Any]]:
        """A condition every read adds (e.g. entries still within the retention) and its arguments."""
        return "true", []

    def key_of(self, row: asyncpg.Record) -> Key:
        return tuple(_key_text(row[column.name]) for column in self.key_columns)

    def _key_expression(self) -> str:
        return "(" + ", ".join(column.name for column in self.key_columns) + ")"

    def _key_parameters(self, first: int) -> str:
        casts = (f"${first + i}::text::{column.sql_type}" for i, column in enumerate(self.key_columns))
        return "(" + ", ".join(casts) + ")"

    def _range_query(self, after: Key | None, upper: Key | None, limit: int, lock: bool) -> tuple[str, list[Any]]:
        condition, arguments = self.row_filter()
        conditions = [condition]
        if after is not None:
            conditions.append(f"{self._key_expression()} > {self._key_parameters(len(arguments) + 1)}")
            arguments.extend(after)
        if upper is not None:
            conditions.append(f"{self._key_expression()} <= {self._key_parameters(len(arguments) + 1)}")
            arguments.extend(upper)
        arguments.append(limit)
        order = ", ".join(column.name for column in self.key_columns)
        # Built from the spec's fixed identifiers; every value is a bind parameter.
        query = (
            f"SELECT * FROM {self.source} WHERE {' AND '.join(conditions)} "  # noqa: S608
            f"ORDER BY {order} LIMIT ${len(arguments)}{' FOR SHARE' if lock else ''}"
        )
        return query, arguments

    async def read_page(
        self, executor: Executor, after: Key | None, upper: Key | None, limit: int, *, lock: bool = False
    ) -> list[asyncpg.Record]:
        """Up to `limit` rows with after < key <= upper, in key order; `lock` takes FOR SHARE on them."""
        query, arguments = self._range_query(after, upper, limit, lock)
        return list(await executor.fetch(query, *arguments))

    async def count(self, executor: Executor) -> int:
        condition, arguments = self.row_filter()
        return int(await executor.fetchval(f"SELECT count(*) FROM {self.source} WHERE {condition}", *arguments))  # noqa: S608

    async def sample_keys(self, executor: Executor, fraction: float) -> list[Key]:
        """Keys of a random sample of rows, in key order: the basis for splitting the key space into ranges."""
        condition, arguments = self.row_filter()
        order = ", ".join(column.name for column in self.key_columns)
        rows = await executor.fetch(
            f"SELECT {order} FROM {self.source} TABLESAMPLE BERNOULLI ({100 * fraction}) "  # noqa: S608
            f"WHERE {condition} ORDER BY {order}",
            *arguments,
        )
        return [self.key_of(row) for row in rows]

    @abstractmethod
    async def rows_for_items(self, executor: Executor, keys: Sequence[ItemKey], *, lock: bool) -> list[asyncpg.Record]:
        """The rows that the items with these keys stand for (those that still exist)."""

    @abstractmethod
    async def rows_for_journal_keys(self, executor: Executor, journal_keys: Sequence[str]) -> list[asyncpg.Record]:
        """The rows that journaled writes with these item keys (what Journal.append was given) wrote, those that
        still exist and that every read keeps (`row_filter`): what an incremental verification compares."""

    # --- DynamoDB side ------------------------------------------------------------------------------------

    @abstractmethod
    def items(self, row: asyncpg.Record) -> list[Item]:
        """Every DynamoDB item a row becomes, mapped by the service's own adapter functions."""

    def item_key(self, item: Item) -> ItemKey:
        return tuple(_string(item[attribute]) for attribute in self.key_attributes)

    def key_item(self, key: ItemKey) -> Item:
        return {attribute: {"S": value} for attribute, value in zip(self.key_attributes, key, strict=True)}

    def ignored(self, item: Item) -> bool:
        """Items a comparison leaves out (e.g. past their TTL: DynamoDB deletes them on its own schedule)."""
        return False

    @abstractmethod
    def journal_refs(self, key: ItemKey, row: asyncpg.Record | None) -> tuple[str, ...]:
        """What a journal entry for a write to this item carries (its item key or one of its routing keys), given
        the row the item stands for when PostgreSQL has it: a write in flight to the item shows up under these."""

    def delete_condition(self, item: Item) -> dict[str, Any]:
        """Conditions for deleting an item found extra, so that only the item as it was seen is deleted."""
        return {}

    # --- back into PostgreSQL -----------------------------------------------------------------------------

    @abstractmethod
    async def restore(self, pool: asyncpg.Pool, items: Sequence[Item], run_id: int) -> RestoredPage:
        """Writes one page of scanned items into PostgreSQL, never over a newer version (`run_id`: the reverse
        sync's run, for rows that record where they came from)."""


def _key_text(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # microseconds and offset: PostgreSQL reads back exactly this instant
    return str(value)


def _string(value: AttributeValueTypeDef) -> str:
    text = value.get("S")
    if text is None:
        raise ValueError("key attributes are strings")
    return text


@dataclass(frozen=True)
class RestoredPage:
    """What writing one scanned page of DynamoDB items back into PostgreSQL did (the way back from dynamo_only)."""

    inserted: int = 0
    updated: int = 0
    kept: int = 0
    skipped: int = 0
    conflict_keys: tuple[str, ...] = ()
