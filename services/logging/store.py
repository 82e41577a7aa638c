"""HybridLogStore: the LogRepository the service uses, routing each call by the live stage of table `logs`."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from migration.hybrid import Connection, HybridTable, JournalItem
from services.logging.adapters.postgres import PostgresLogRepository, is_missing_partition
from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel
from services.logging.ports import LogRepository

BATCH_KEY_PREFIX = "batch:"
ENTRY_FIELDS = tuple(field.name for field in dataclasses.fields(LogEntry))


# Read keys served from a GSI (by_trace), which is eventually consistent: a batch just copied may not show in it
# yet, so they stay routed to PostgreSQL while it settles (migration.journal). A service's entries are read from the
# base table with consistent Queries and need no settling - a busy service would otherwise never be read from
# DynamoDB.
INDEX_READ_KINDS = ("trace",)


def routing_keys(batch: LogBatch) -> list[str]:
    """The reads a batch can change: each of its services' listings and each of its traces."""
    keys = {f"service:{entry.service}" for entry in batch.entries}
    keys.update(f"trace:{entry.trace_id}" for entry in batch.entries if entry.trace_id)
    return sorted(keys)


def compare_entries(served: list[LogEntry], other: list[LogEntry]) -> list[str]:
    if [entry.id for entry in served] != [entry.id for entry in other]:
        return ["<items>"]
    return sorted(
        {
            name
            for a, b in zip(served, other, strict=True)
            for name in ENTRY_FIELDS
            if getattr(a, name) != getattr(b, name)
        }
    )


def merge_entries(
    from_dynamo: list[LogEntry], from_postgres: list[LogEntry], limit: int, *, newest_first: bool
) -> list[LogEntry]:
    """Two stores' pages of one listing as one. Entries never change, so each id is one entry whichever store
    holds it; both pages start at the same position with up to `limit` entries, so the union's first `limit` are
    the merged page."""
    by_id = {entry.id: entry for entry in (*from_postgres, *from_dynamo)}
    return sorted(by_id.values(), key=lambda entry: (entry.time, entry.id), reverse=newest_first)[:limit]


class HybridLogStore:
    """PostgreSQL and DynamoDB behind one LogRepository, as the `logs` stage says (see migration.hybrid).

    A batch is one PostgreSQL statement plus one journal entry naming the batch; the inline copy (or the relay)
    writes the batch's rows to DynamoDB. Entries never change, so any copy of a batch is as good as another.
    """

    backend = "hybrid"

    def __init__(
        self,
        table: HybridTable,
        postgres: PostgresLogRepository,
        dynamo: LogRepository,
        *,
        ensure_partitions: Callable[[], Awaitable[object]] | None = None,
        dynamo_batch_timeout: float | None = None,
    ) -> None:
        self._table = table
        self._postgres = postgres
        self._dynamo = dynamo
        self._ensure_partitions = ensure_partitions
        self._batch_timeout = dynamo_batch_timeout

    async def replicate(self, key: str) -> None:
        """The relay's copy: the rows PostgreSQL holds for one batch, written to DynamoDB."""
        batch = await self._postgres.batch(uuid.UUID(key.removeprefix(BATCH_KEY_PREFIX)))
        if batch.entries:
            await self._dynamo.write(batch)

    async def write(self, batch: LogBatch) -> int:
        try:
            return await self._write(batch)
        except Exception as error:
            # A day without its partition yet (maintenance runs hourly, ahead of time; this is the safety net).
            if self._ensure_partitions is None or not is_missing_partition(_root(error)):
                raise
            await self._ensure_partitions()
            return await self._write(batch)

    async def _write(self, batch: LogBatch) -> int:
        def journal_item(inserted: int) -> JournalItem | None:
            # A batch whose every entry was stored before (a shipper's retry) has nothing new to copy.
            return JournalItem(f"{BATCH_KEY_PREFIX}{batch.id}", 1, routing_keys(batch)) if inserted else None

        async def in_postgres(connection: Connection) -> int:
            return await PostgresLogRepository(connection).write(batch)

        return await self._table.write(
            "write",
            postgres=in_postgres,
            journal_item=journal_item,
            copy_to_dynamo=lambda _: self._dynamo.write(batch),
            dynamo_only=lambda: self._dynamo.write(batch),
            dynamo_timeout=self._batch_timeout,
        )

    async def query(
        self,
        service: str,
        time_from: datetime,
        time_to: datetime,
        min_level: LogLevel,
        before: LogCursor | None,
        limit: int,
    ) -> list[LogEntry]:
        return await self._table.read(
            "query",
            postgres=lambda: self._postgres.query(service, time_from, time_to, min_level, before, limit),
            dynamo=lambda: self._dynamo.query(service, time_from, time_to, min_level, before, limit),
            merge=lambda from_dynamo, from_postgres: merge_entries(
                from_dynamo, from_postgres, limit, newest_first=True
            ),
            routing_keys=[f"service:{service}"],
            compare=compare_entries,
            item_key=f"service:{service}",
        )

    async def trace(self, trace_id: str, limit: int) -> list[LogEntry]:
        return await self._table.read(
            "trace",
            postgres=lambda: self._postgres.trace(trace_id, limit),
            dynamo=lambda: self._dynamo.trace(trace_id, limit),
            merge=lambda from_dynamo, from_postgres: merge_entries(
                from_dynamo, from_postgres, limit, newest_first=False
            ),
            routing_keys=[f"trace:{trace_id}"],
            compare=compare_entries,
            item_key=f"trace:{trace_id}",
        )


def _root(error: BaseException) -> BaseException:
    """The store's own error under the domain errors it was translated into."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
