"""The relay: copies journaled writes to DynamoDB until the journal is empty, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from migration.journal import Journal, JournalEntry

logger = logging.getLogger(__name__)

# Copies the current PostgreSQL state of one item to DynamoDB (a conditional, version-guarded write), so a
# replay is harmless and an older version can never replace a newer one.
Replicate = Callable[[str], Awaitable[None]]


class Relay:
    def __init__(
        self,
        journal: Journal,
        replicate: Replicate,
        *,
        batch_size: int = 100,
        concurrency: int = 8,
        idle_seconds: float = 0.5,
    ) -> None:
        self._journal = journal
        self._replicate = replicate
        self._batch_size = batch_size
        self._concurrency = asyncio.Semaphore(concurrency)
        self._idle_seconds = idle_seconds
        # Settled copies are dropped about as often as they settle: the table stays a few seconds of writes long.
        self._forget_every_seconds = max(journal.settle.total_seconds(), idle_seconds)
        self.copied = 0
        self.failed = 0

    async def drain_once(self) -> int:
        """Copy one batch of due entries; returns how many entries it completed."""
        entries = await self._journal.claim_due(self._batch_size)
        if not entries:
            return 0
        by_key: dict[str, list[JournalEntry]] = defaultdict(list)
        for entry in entries:
            by_key[entry.item_key].append(entry)
        results = await asyncio.gather(*(self._copy(key, group) for key, group in by_key.items()))
        return sum(results)

    async def _copy(self, key: str, entries: list[JournalEntry]) -> int:
        async with self._concurrency:
            try:
                # One copy per key covers all of its entries: it reads the latest state, not the entry's.
                await self._replicate(key)
            except Exception as error:  # any failure: keep the entries and try again later
                self.failed += len(entries)
                logger.warning(
                    "relay copy failed; will retry",
                    extra={
                        "table": self._journal.table,
                        "attempts": max(e.attempts for e in entries),
                        "error": type(error).__name__,
                    },
                )
                await self._journal.retry_later(entries, error)
                return 0
        await self._journal.complete([entry.id for entry in entries])
        self.copied += len(entries)
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
