"""The logs table as the migration toolkit sees it: entries by (service, time, id) within the retention, one sharded
item each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from migration.table_spec import Executor, Item, ItemKey, KeyColumn, RestoredPage, TableSpec
from services.logging.adapters.dynamodb import TTL_ATTRIBUTE, LogTableLayout, log_entry
from services.logging.adapters.postgres import INSERT_BATCH, batch_arguments, ensure_partitions, entry_from_row
from services.logging.domain import LogBatch
from services.logging.store import BATCH_KEY_PREFIX


class LogSpec(TableSpec):
    """logging.entries by (service, time, id) within the retention; each row is one sharded item."""

    name = "logs"
    source = "logging.entries"
    key_columns = (KeyColumn("service", "text"), KeyColumn("time", "timestamptz"), KeyColumn("id", "uuid"))
    key_attributes = ("pk", "sk")
    scan_attributes = (TTL_ATTRIBUTE,)
    lock_rows = False

    def __init__(self, layout: LogTableLayout, now: datetime | None = None) -> None:
        self.layout = layout
        # Fixed per run, so every page of a run sees the same rows: older entries have expired in DynamoDB.
        self.cutoff = (now or datetime.now(UTC)) - layout.retention

    def row_filter(self) -> tuple[str, list[Any]]:
        return "time >= $1", [self.cutoff]

    def items(self, row: asyncpg.Record) -> list[Item]:
        return [self.layout.item(entry_from_row(row))]

    async def rows_for_items(self, executor: Executor, keys: Sequence[ItemKey], *, lock: bool) -> list[asyncpg.Record]:
        services, times, ids = [], [], []
        for pk, sk in keys:
            moment, _, entry_id = sk.partition("#")
            services.append(pk.split("#", 1)[0])
            times.append(datetime.fromisoformat(moment))
            ids.append(entry_id)
        rows = await executor.fetch(
            # LATERAL: one primary-key lookup per key (in its day's partition), never a scan of the table.
            """SELECT e.* FROM unnest($1::text[], $2::timestamptz[], $3::text[]::uuid[]) AS k(service, time, id)
               CROSS JOIN LATERAL (SELECT * FROM logging.entries
                                   WHERE service = k.service AND time = k.time AND id = k.id) AS e""",
            services,
            times,
            ids,
        )
        return list(rows)

    async def rows_for_journal_keys(self, executor: Executor, journal_keys: Sequence[str]) -> list[asyncpg.Record]:
        # A batch is journaled as one entry naming it: its entries, those still within the retention.
        batches = [key.removeprefix(BATCH_KEY_PREFIX) for key in journal_keys if key.startswith(BATCH_KEY_PREFIX)]
        rows = await executor.fetch(
            """SELECT * FROM logging.entries WHERE batch_id = ANY($1::text[]::uuid[]) AND time >= $2
               ORDER BY service, time, id""",
            batches,
            self.cutoff,
        )
        return list(rows)

    def journal_refs(self, key: ItemKey, row: asyncpg.Record | None) -> tuple[str, ...]:
        # A batch is journaled as one entry naming it (services.logging.store); an entry PostgreSQL lacks was never
        # journaled (log writes reach PostgreSQL first).
        return () if row is None else (f"{BATCH_KEY_PREFIX}{row['batch_id']}",)

    def ignored(self, item: Item) -> bool:
        expires = item.get(TTL_ATTRIBUTE, {}).get("N")
        return expires is not None and int(expires) < time.time()

    async def restore(self, pool: asyncpg.Pool, items: Sequence[Item], run_id: int) -> RestoredPage:
        """Insert where absent: entries never change."""
        # Entries past the retention have expired in DynamoDB (TTL) and are dropped in PostgreSQL: leave them.
        entries = [log_entry(item) for item in items if not self.ignored(item)]
        entries = [entry for entry in entries if entry.time >= self.cutoff]
        skipped = len(items) - len(entries)
        if not entries:
            return RestoredPage(skipped=skipped)
        await ensure_partitions(pool, {entry.time.astimezone(UTC).date() for entry in entries})
        # The rows of one sync share a batch id derived from its run, so they can be told apart later.
        batch = LogBatch(uuid.UUID(int=run_id), entries)
        inserted: int = await pool.fetchval(INSERT_BATCH, *batch_arguments(batch))
        return RestoredPage(inserted=inserted, kept=len(entries) - inserted, skipped=skipped)
