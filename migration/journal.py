"""The write journal (outbox): one entry per PostgreSQL write that DynamoDB does not hold yet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from chassis.backoff import full_jitter
from migration.observability import sampled_backlog

Executor = asyncpg.Connection | asyncpg.Pool | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class JournalEntry:
    id: int
    item_key: str
    item_version: int
    attempts: int
    created_at: datetime | None = None
    # The W3C traceparent of the write that journaled it (None: written untraced, or before it was recorded).
    trace_context: str | None = None


class Pending(StrEnum):
    """Why DynamoDB may not show a write to a key yet (the values are `loanbook.route.reason`s)."""

    WRITE = "pending_write"  # journaled, not copied yet
    SETTLING = "settling"  # copied a moment ago: an index may not show it yet


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_age_seconds: float
    retrying: int  # entries that failed at least once


# How long a read key stays routed to PostgreSQL after its DynamoDB copy landed. DynamoDB propagates a write to
# its GSIs within a second in normal operation (DynamoDB Local at once); a few seconds of PostgreSQL reads for a
# just-written key is cheap insurance against a listing that misses an acknowledged write.
DEFAULT_SETTLE = timedelta(seconds=3)
# How long a relay holds the entries it claimed; one that dies loses them to another relay after this.
DEFAULT_LEASE = timedelta(seconds=30)


_TRACE_CONTEXT: Final = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The current span's W3C traceparent, for a relay to link its copy to the write (None outside a span)."""
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier.get("traceparent")


def linked_context(traceparent: str | None) -> SpanContext | None:
    """The span a stored traceparent names, to link to; None if there is none (or it does not parse)."""
    if not traceparent:
        return None
    context = trace.get_current_span(_TRACE_CONTEXT.extract({"traceparent": traceparent})).get_span_context()
    return context if context.is_valid else None


def retry_delay(attempts: int, base: float = 0.2, cap: float = 60.0) -> timedelta:
    """When a failed entry is due again: many failed entries must not retry in lockstep."""
    return timedelta(seconds=full_jitter(attempts, base=base, cap=cap))


class Journal:
    """Entries of one table. `append` runs inside the caller's transaction, so the entry and the row it stands
    for commit (or roll back) together."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        table: str,
        lease: timedelta = DEFAULT_LEASE,
        settle: timedelta = DEFAULT_SETTLE,
        settling_kinds: Sequence[str] | None = None,
    ) -> None:
        """`settle`: how long a copied entry's keys stay pending; `settling_kinds`: which keys (by the kind before
        the first ':', e.g. "customer" of "customer:<id>") are read through an eventually consistent index and
        need it — None: all of them. Keys read with consistent reads need no settling."""
        self._pool = pool
        self.table = table
        self._lease = lease
        self.settle = settle
        self._settling_kinds = None if settling_kinds is None else list(settling_kinds)

    async def append(
        self,
        connection: Executor,
        item_key: str,
        item_version: int,
        routing_keys: Sequence[str],
        due_in: timedelta = timedelta(0),
    ) -> int:
        """Journals a write; the entry carries the current trace context, so the relay's copy links to the write.
        `due_in`: how long the relay leaves the entry to the write's own copy (see `due_now`)."""
        # The key goes into the key history in the same statement: kept after the entry is gone, it tells an
        # incremental verification which keys were written since the last one (toolkit.verify).
        entry_id: int = await connection.fetchval(
            """WITH entry AS (
                   INSERT INTO migration.journal
                       (table_name, item_key, item_version, routing_keys, trace_context, next_attempt_at)
                   VALUES ($1, $2, $3, $4, $5, now() + $6::interval) RETURNING id),
               kept AS (INSERT INTO migration.key_history (table_name, item_key) VALUES ($1, $2))
               SELECT id FROM entry""",
            self.table,
            item_key,
            item_version,
            list(routing_keys),
            current_traceparent(),
            due_in,
        )
        return entry_id

    async def due_now(self, entry_id: int) -> None:
        """The write's own copy failed: the relay takes the entry at once instead of after its head start."""
        await self._pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE id = $1", entry_id)

    async def complete(self, entry_ids: Sequence[int]) -> None:
        """The entries' copies are in DynamoDB: they leave the journal, and their index-read keys settle a moment."""
        if not self.settle or self._settling_kinds == []:
            await self._pool.execute("DELETE FROM migration.journal WHERE id = ANY($1::bigint[])", list(entry_ids))
            return
        await self._pool.execute(
            """WITH done AS (DELETE FROM migration.journal WHERE id = ANY($1::bigint[])
                             RETURNING table_name, routing_keys),
                    settling AS (SELECT table_name,
                                        ARRAY(SELECT key FROM unnest(routing_keys) AS key
                                              WHERE $3::text[] IS NULL
                                                 OR split_part(key, ':', 1) = ANY($3::text[])) AS keys
                                 FROM done)
               INSERT INTO migration.journal_settling (table_name, routing_keys, settles_at)
               SELECT table_name, keys, now() + $2::interval FROM settling WHERE cardinality(keys) > 0""",
            list(entry_ids),
            self.settle,
            self._settling_kinds,
        )

    async def has_pending(self, routing_keys: Sequence[str]) -> Pending | None:
        """Whether a write touching any of these keys may still be missing from what DynamoDB reads return, and
        why: not copied yet (Pending.WRITE), or copied so recently that an index may not show it yet
        (Pending.SETTLING, see `settle`); None when DynamoDB shows every write to them. One round trip either way."""
        pending: str | None = await self._pool.fetchval(
            """SELECT CASE
                   WHEN EXISTS (SELECT 1 FROM migration.journal
                                WHERE table_name = $1 AND routing_keys && $2::text[]) THEN 'pending_write'
                   WHEN EXISTS (SELECT 1 FROM migration.journal_settling
                                WHERE table_name = $1 AND routing_keys && $2::text[] AND settles_at > now())
                       THEN 'settling'
               END""",
            self.table,
            list(routing_keys),
        )
        return None if pending is None else Pending(pending)

    async def forget_settled(self) -> int:
        """Drop the copies that have settled; returns how many. The relay calls it now and then."""
        result: str = await self._pool.execute(
            "DELETE FROM migration.journal_settling WHERE table_name = $1 AND settles_at <= now()", self.table
        )
        return int(result.rsplit(" ", 1)[-1])

    async def forget_history(self, older_than: timedelta) -> int:
        """Drop key history older than `older_than` that no verification has covered yet (a clean one drops what it
        covers at once), recording the gap: an incremental verification cannot build on a chain across it, and the
        guards ask for a full one again. Returns how many rows went."""
        dropped: int = await self._pool.fetchval(
            """WITH gone AS (DELETE FROM migration.key_history
                             WHERE table_name = $1 AND written_at < now() - $2::interval RETURNING written_at),
                    gap AS (INSERT INTO migration.key_history_gaps (table_name, snapshot, rows, oldest, newest, reason)
                            SELECT $1, pg_current_snapshot(), count(*), min(written_at), max(written_at), $3
                            FROM gone HAVING count(*) > 0)
               SELECT count(*) FROM gone""",
            self.table,
            older_than,
            f"older than the key history's retention ({older_than.total_seconds() / 3600:g} h)",
        )
        return dropped

    async def claim_due(self, limit: int) -> list[JournalEntry]:
        """Lease up to `limit` due entries to this caller. A relay that dies holding a lease loses it when the
        lease runs out, and another relay picks the entries up: nothing is lost, at worst copied twice."""
        # The due ids are picked once, in a materialised CTE: as `WHERE id IN (SELECT ... LIMIT n SKIP LOCKED)`
        # the planner may run the subquery more than once and lease more than `limit` entries (seen: 6 for 3).
        rows = await self._pool.fetch(
            """WITH due AS MATERIALIZED (
                   SELECT id FROM migration.journal
                   WHERE table_name = $1 AND next_attempt_at <= now()
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
               UPDATE migration.journal AS journal
               SET next_attempt_at = now() + $3::interval, attempts = journal.attempts + 1
               FROM due WHERE journal.id = due.id
               RETURNING journal.id, journal.item_key, journal.item_version, journal.attempts, journal.created_at,
                         journal.trace_context""",
            self.table,
            limit,
            self._lease,
        )
        return sorted(
            (
                JournalEntry(
                    r["id"], r["item_key"], r["item_version"], r["attempts"], r["created_at"], r["trace_context"]
                )
                for r in rows
            ),
            key=lambda entry: entry.id,
        )

    async def retry_later(self, entries: Sequence[JournalEntry], error: BaseException) -> None:
        # The error's class and first line are enough to diagnose; item contents never go here.
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]
        async with self._pool.acquire() as connection:
            await connection.executemany(
                "UPDATE migration.journal SET next_attempt_at = now() + $2::interval, last_error = $3 WHERE id = $1",
                [(entry.id, retry_delay(entry.attempts), message) for entry in entries],
            )

    async def backlog(self) -> Backlog:
        row = await self._pool.fetchrow(
            """SELECT count(*) AS pending, count(*) FILTER (WHERE last_error IS NOT NULL) AS retrying,
                      coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest
               FROM migration.journal WHERE table_name = $1""",
            self.table,
        )
        assert row is not None
        backlog = Backlog(row["pending"], float(row["oldest"]), row["retrying"])
        sampled_backlog(self.table, backlog.pending, backlog.oldest_age_seconds)  # every look feeds the gauges
        return backlog
