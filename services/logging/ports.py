"""The log storage port, implemented alike by the DynamoDB, PostgreSQL and in-memory adapters."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel


class LogRepository(Protocol):
    """Entries are immutable and keyed by (service, time, id): writing one twice stores it once."""

    backend: str  # "postgres" | "dynamodb" | "memory", for traces and reports

    async def write(self, batch: LogBatch) -> int:
        """Store every entry of the batch (idempotently); returns how many were new where the store can tell."""
        ...

    async def query(
        self,
        service: str,
        time_from: datetime,
        time_to: datetime,
        min_level: LogLevel,
        before: LogCursor | None,
        limit: int,
    ) -> list[LogEntry]:
        """One service's entries with time_from <= time < time_to and level >= min_level, newest first by
        (time, id), strictly before `before` when given."""
        ...

    async def trace(self, trace_id: str, limit: int) -> list[LogEntry]:
        """Every entry of one trace in (time, id) order, at most `limit`."""
        ...
