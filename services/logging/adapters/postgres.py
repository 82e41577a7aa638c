"""LogRepository on PostgreSQL: a table partitioned by day, written a batch per statement, retention by DROP."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from chassis.sql import BoundPredicates
from chassis.store_errors import postgres_errors_translated
from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel

translated = postgres_errors_translated("log")

Executor = asyncpg.Connection | asyncpg.Pool | asyncpg.pool.PoolConnectionProxy

COLUMNS = "service, time, id, level, message, attributes, trace_id, span_id"
PARTITION_NAME = re.compile(r"entries_p(\d{8})")
# Serialises partition DDL between replicas starting at once (any constant; this one spells "logs").
PARTITION_LOCK = 0x6C6F6773

# One INSERT per batch: arrays in, rows out. Faster than executemany (one round trip, one plan) and, unlike
# COPY, it can skip entries a shipper re-sends (ON CONFLICT on the primary key) in the same statement.
INSERT_BATCH = f"""
    WITH inserted AS (
        INSERT INTO logging.entries ({COLUMNS}, batch_id)
        SELECT service, time, id, level, message, attributes, nullif(trace_id, ''), nullif(span_id, ''), $9
        FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::smallint[], $5::text[], $6::jsonb[],
                    $7::text[], $8::text[]) AS e(service, time, id, level, message, attributes, trace_id, span_id)
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""  # noqa: S608 - a fixed column list


def entry_from_row(row: asyncpg.Record) -> LogEntry:
    return LogEntry(
        id=row["id"],
        time=row["time"],
        service=row["service"],
        level=LogLevel(row["level"]),
        message=row["message"],
        attributes=json.loads(row["attributes"]),
        trace_id=row["trace_id"] or "",
        span_id=row["span_id"] or "",
    )


def batch_arguments(batch: LogBatch) -> tuple[Any, ...]:
    entries = batch.entries
    return (
        [e.service for e in entries],
        [e.time for e in entries],
        [e.id for e in entries],
        [int(e.level) for e in entries],
        [e.message for e in entries],
        [json.dumps(e.attributes, separators=(",", ":")) for e in entries],
        [e.trace_id for e in entries],
        [e.span_id for e in entries],
        batch.id,
    )


def query_statement(
    service: str, time_from: datetime, time_to: datetime, min_level: LogLevel, before: LogCursor | None, limit: int
) -> tuple[str, *tuple[Any, ...]]:
    """The SELECT of one newest-first page and its arguments (public so tests can EXPLAIN it)."""
    where = BoundPredicates()
    where.add("service = {} AND time >= {} AND time < {}", service, time_from, time_to)
    limit_placeholder = where.bind(limit)
    if min_level > LogLevel.DEBUG:
        where.add("level >= {}", int(min_level))
    if before is not None:
        where.add("(time, id) < ({}, {})", before.time, before.id)
    # Fixed column list and conditions; every value is a parameter.
    sql = (
        f"SELECT {COLUMNS} FROM logging.entries WHERE {where.joined()} "  # noqa: S608
        f"ORDER BY time DESC, id DESC LIMIT {limit_placeholder}"
    )
    return sql, *where.arguments


class PostgresLogRepository:
    backend = "postgres"

    def __init__(self, executor: Executor) -> None:
        """`executor` is the pool, or a connection inside the caller's transaction (the hybrid store's write)."""
        self._db = executor

    @translated
    async def write(self, batch: LogBatch) -> int:
        inserted: int = await self._db.fetchval(INSERT_BATCH, *batch_arguments(batch))
        return inserted

    @translated
    async def query(
        self,
        service: str,
        time_from: datetime,
        time_to: datetime,
        min_level: LogLevel,
        before: LogCursor | None,
        limit: int,
    ) -> list[LogEntry]:
        rows = await self._db.fetch(*query_statement(service, time_from, time_to, min_level, before, limit))
        return [entry_from_row(row) for row in rows]

    @translated
    async def trace(self, trace_id: str, limit: int) -> list[LogEntry]:
        rows = await self._db.fetch(
            f"SELECT {COLUMNS} FROM logging.entries WHERE trace_id = $1 ORDER BY time, id LIMIT $2",  # noqa: S608
            trace_id,
            limit,
        )
        return [entry_from_row(row) for row in rows]

    @translated
    async def batch(self, batch_id: uuid.UUID) -> LogBatch:
        """The rows a batch stored (the relay's copy); empty once retention dropped them."""
        rows = await self._db.fetch(f"SELECT {COLUMNS} FROM logging.entries WHERE batch_id = $1", batch_id)  # noqa: S608
        return LogBatch(batch_id, [entry_from_row(row) for row in rows])


def is_missing_partition(error: BaseException) -> bool:
    """An insert for a day that has no partition yet (maintenance lagging behind, or a clock jump)."""
    return isinstance(error, asyncpg.CheckViolationError) and "no partition" in str(error)


class LogPartitions:
    """Creates the daily partitions the retention window needs (and a few days ahead); drops expired ones.

    A day's partition is dropped once all of it is older than the retention, so entries live between
    `retention_days` and one day longer.
    """

    def __init__(self, pool: asyncpg.Pool, retention_days: int, days_ahead: int = 3) -> None:
        self._pool = pool
        self.retention_days = retention_days
        self._days_ahead = days_ahead

    async def existing(self) -> list[date]:
        return await _partition_days(self._pool)

    async def maintain(self, now: datetime | None = None) -> tuple[list[date], list[date]]:
        """Create what is missing, drop what expired; returns (created, dropped) days."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        cutoff = now - timedelta(days=self.retention_days)
        span = (now.date() - cutoff.date()).days + self._days_ahead
        wanted = [cutoff.date() + timedelta(days=n) for n in range(span + 1)]
        dropped: list[date] = []
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            present = set(await _partition_days(connection))
            created = await _create_partitions(connection, [day for day in wanted if day not in present])
            for day in sorted(present):
                if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= cutoff:
                    await connection.execute(f"DROP TABLE logging.entries_p{day:%Y%m%d}")
                    dropped.append(day)
        return created, dropped


async def ensure_partitions(pool: asyncpg.Pool, days: Iterable[date]) -> list[date]:
    """Create the partitions of `days` that are missing (and drop nothing); returns the days created.

    For loading history (`loanbook seed`): days older than the logging service's retention are dropped again at
    its next maintenance.
    """
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        present = set(await _partition_days(connection))
        return await _create_partitions(connection, sorted(set(days) - present))


async def _create_partitions(connection: Executor, days: Iterable[date]) -> list[date]:
    created = []
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        # Identifiers cannot be parameters; the name and bounds come from a date, never from input.
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS logging.entries_p{day:%Y%m%d} PARTITION OF logging.entries "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')"
        )
        created.append(day)
    return created


async def _partition_days(executor: Executor) -> list[date]:
    rows = await executor.fetch(
        """SELECT c.relname FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
           JOIN pg_namespace n ON n.oid = p.relnamespace
           WHERE n.nspname = 'logging' AND p.relname = 'entries'"""
    )
    days = [PARTITION_NAME.fullmatch(row["relname"]) for row in rows]
    return sorted(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date() for match in days if match)
