"""An in-memory LogRepository that keeps state, for unit tests and the contract suite's reference."""

from __future__ import annotations

from datetime import datetime

from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel, entry_order


class InMemoryLogRepository:
    backend = "memory"

    def __init__(self) -> None:
        self.entries: dict[tuple[str, datetime, object], LogEntry] = {}

    async def write(self, batch: LogBatch) -> int:
        new = 0
        for entry in batch.entries:
            key = (entry.service, entry.time, entry.id)
            if key not in self.entries:
                self.entries[key] = entry
                new += 1
        return new

    async def query(
        self,
        service: str,
        time_from: datetime,
        time_to: datetime,
        min_level: LogLevel,
        before: LogCursor | None,
        limit: int,
    ) -> list[LogEntry]:
        matching = [
            entry
            for entry in self.entries.values()
            if entry.service == service
            and time_from <= entry.time < time_to
            and entry.level >= min_level
            and (before is None or entry_order(entry) < (before.time, before.id))
        ]
        return sorted(matching, key=entry_order, reverse=True)[:limit]

    async def trace(self, trace_id: str, limit: int) -> list[LogEntry]:
        matching = [entry for entry in self.entries.values() if entry.trace_id == trace_id]
        return sorted(matching, key=entry_order)[:limit]
