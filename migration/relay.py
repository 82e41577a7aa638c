"""The relay: copies journaled writes to DynamoDB until the journal is empty, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from chassis.dynamodb_capacity import collected_per_span
from chassis.telemetry import ATTR_MIGRATION_STAGE, ATTR_STORE_BACKEND
from migration.journal import Journal, JournalEntry, linked_context
from migration.observability import (
    ATTR_COLLECTION,
    ATTR_COPY_PATH,
    ATTR_DB_SYSTEM,
    ATTR_OPERATION,
    ATTR_OUTCOME,
    ATTR_ROUTE_REASON,
    DB_SYSTEM,
    Route,
    error_type,
    mark_failed,
    relay_copies,
    relay_lag,
)
from migration.stages import Backend, TableMode

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("loanbook.migration")

# Copies the current PostgreSQL state of one item to DynamoDB (a conditional, version-guarded write), so a
# replay is harmless and an older version can never replace a newer one.
Replicate = Callable[[str], Awaitable[None]]


class Relay:
    """Traced per batch that copies something (an idle poll makes no span): a `{table}.relay.drain` span holding a
    CLIENT span per copied key, linked to the traces of the writes it copies, and the journal completion's."""

    def __init__(
        self,
        journal: Journal,
        replicate: Replicate,
        *,
        mode: Callable[[], TableMode] | None = None,
        batch_size: int = 100,
        concurrency: int = 8,
        idle_seconds: float = 0.5,
    ) -> None:
        """`mode`: the table's mode as this replica runs it, for the spans' stage (omitted without it)."""
        self._journal = journal
        self._replicate = replicate
        self._mode = mode
        self._batch_size = batch_size
        self._concurrency = asyncio.Semaphore(concurrency)
        self._idle_seconds = idle_seconds
        # Settled copies are dropped about as often as they settle: the table stays a few seconds of writes long.
        self._forget_every_seconds = max(journal.settle.total_seconds(), idle_seconds)
        self.copied = 0
        self.failed = 0

    async def drain_once(self) -> int:
        """Copy one batch of due entries; returns how many entries it completed."""
        started = time.time_ns()
        entries = await self._journal.claim_due(self._batch_size)
        if not entries:
            return 0
        by_key: dict[str, list[JournalEntry]] = defaultdict(list)
        for entry in entries:
            by_key[entry.item_key].append(entry)
        table = self._journal.table
        with tracer.start_as_current_span(
            f"{table}.relay.drain",
            start_time=started,  # from the claim on: the batch's whole cycle
            attributes={ATTR_COLLECTION: table, "loanbook.relay.entries": len(entries)},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                results = await asyncio.gather(*(self._copy(key, group) for key, group in by_key.items()))
            except Exception as error:
                mark_failed(span, error, error_type(error))
                raise
            span.set_attribute("loanbook.relay.completed", sum(results))
        return sum(results)

    def _attributes(self, backend: Backend, operation: str) -> dict[str, str]:
        attributes = {
            ATTR_DB_SYSTEM: DB_SYSTEM[backend],
            ATTR_COLLECTION: self._journal.table,
            ATTR_OPERATION: operation,
            ATTR_STORE_BACKEND: backend.value,
            ATTR_ROUTE_REASON: Route.STAGE.value,
            ATTR_COPY_PATH: "relay",
        }
        if self._mode is not None:
            attributes[ATTR_MIGRATION_STAGE] = self._mode().stage.value
        return attributes

    async def _copy(self, key: str, entries: list[JournalEntry]) -> int:
        table = self._journal.table
        failure: Exception | None = None
        async with self._concurrency:
            with tracer.start_as_current_span(
                f"{table}.relay.copy dynamodb",
                kind=SpanKind.CLIENT,
                attributes={**self._attributes(Backend.DYNAMODB, "relay.copy"), "loanbook.relay.entries": len(entries)},
                links=_links(entries),
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    # One copy per key covers all of its entries: it reads the latest state, not the entry's.
                    with collected_per_span():
                        await self._replicate(key)
                except Exception as error:  # any failure: keep the entries and try again later
                    failure = error
                    mark_failed(span, error, error_type(error))
        if failure is not None:
            self.failed += len(entries)
            relay_copies.add(len(entries), {ATTR_COLLECTION: table, ATTR_OUTCOME: "failed"})
            logger.warning(
                "relay copy failed; will retry",
                extra={"table": table, "attempts": max(e.attempts for e in entries), "error": type(failure).__name__},
            )
            await self._journal.retry_later(entries, failure)
            return 0
        with tracer.start_as_current_span(
            f"{table}.relay.complete postgres",
            kind=SpanKind.CLIENT,
            attributes=self._attributes(Backend.POSTGRES, "relay.complete"),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._journal.complete([entry.id for entry in entries])
            except Exception as error:
                mark_failed(span, error, error_type(error))
                raise
        self.copied += len(entries)
        relay_copies.add(len(entries), {ATTR_COLLECTION: table, ATTR_OUTCOME: "copied"})
        done = datetime.now(UTC)
        for entry in entries:
            if entry.created_at is not None:
                relay_lag.record(max(0.0, (done - entry.created_at).total_seconds()), {ATTR_COLLECTION: table})
        return len(entries)

    async def drain(self) -> int:
        """Copy until nothing is due; returns the number of entries completed."""
        total = 0
        while completed := await self.drain_once():
            total += completed
        return total

    async def run(self) -> None:
        """Drain forever (a background task of each service replica); replicas share the work safely."""
        forgotten_at = 0.0
        while True:
            try:
                if self._journal.settle and time.monotonic() - forgotten_at >= self._forget_every_seconds:
                    forgotten_at = time.monotonic()
                    await self._journal.forget_settled()
                if await self.drain_once() == 0:
                    await asyncio.sleep(self._idle_seconds)
            except asyncio.CancelledError:
                raise
            except Exception:  # PostgreSQL itself unreachable: wait and try again
                logger.exception("relay cycle failed", extra={"table": self._journal.table})
                await asyncio.sleep(self._idle_seconds * 4)


def _links(entries: Sequence[JournalEntry]) -> list[Link]:
    """A link to each write's trace the copy carries out (entries journaled untraced have none)."""
    links = []
    for entry in entries:
        context = linked_context(entry.trace_context)
        if context is not None:
            links.append(Link(context, {"loanbook.journal.entry_id": entry.id}))
    return links
