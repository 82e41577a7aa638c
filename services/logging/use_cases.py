"""What the logging service does: validated, all-or-nothing batch writes and paginated queries over the store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chassis.errors import FieldViolation, InvalidArgument
from chassis.ids import new_id
from chassis.page_tokens import PageTokens, page_size_or_default
from services.logging.domain import (
    MAX_CLOCK_SKEW,
    TRACE_ID_PATTERN,
    EntryCandidate,
    LogBatch,
    LogCursor,
    LogEntry,
    LogLevel,
    check_batch,
    name_problem,
)
from services.logging.ports import LogRepository

DEFAULT_QUERY_WINDOW = timedelta(hours=1)
# A service's entries lie between the retention horizon (give or take: DynamoDB's TTL deletes within about two
# days, PostgreSQL drops a day's partition once it is wholly past) and a skewed clock's future. A query window is
# cut to that span, so a client's "from year 1 to year 9999" cannot walk millions of empty hours (DynamoDB is
# read hour by hour) nor step past the first representable time.
RETENTION_GRACE = timedelta(days=3)
EARLIEST = datetime.min.replace(tzinfo=UTC)
# GetTraceLogs answers in one message; a trace with more lines than this is cut at this many (oldest first).
MAX_TRACE_ENTRIES = 5000


@dataclass(frozen=True)
class LogPage:
    items: Sequence[LogEntry]
    next_page_token: str


class LogUseCases:
    def __init__(
        self,
        store: LogRepository,
        page_tokens: PageTokens,
        retention: timedelta,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._tokens = page_tokens
        self._retention = retention
        self._now = now

    async def write_logs(self, candidates: Sequence[EntryCandidate], *, validate_only: bool = False) -> int:
        """Stores every entry or none: one bad entry rejects the batch with every problem found, by index.

        Returns how many entries the batch carried; entries re-sent with the same id are stored once. With
        `validate_only` the batch is checked the same way and nothing is stored.
        """
        entries, violations = check_batch(candidates, self._now(), self._retention)
        if violations:
            raise InvalidArgument(violations)
        if validate_only:
            return len(entries)
        await self._store.write(LogBatch(new_id(), entries))
        return len(entries)

    async def query_logs(
        self,
        service: str,
        time_from: datetime | None,
        time_to: datetime | None,
        min_level: int,
        page_size: int,
        page_token: str,
    ) -> LogPage:
        violations: list[FieldViolation] = []
        if problem := name_problem(service, "a service name"):
            violations.append(FieldViolation("service", problem))
        if min_level and min_level not in LogLevel._value2member_map_:
            violations.append(FieldViolation("min_level", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"))
        now = self._now()
        upper = time_to or now
        lower = time_from or max(upper, EARLIEST + DEFAULT_QUERY_WINDOW) - DEFAULT_QUERY_WINDOW
        if lower >= upper:
            violations.append(FieldViolation("from_time", "must be before to_time"))
        limit = page_size_or_default(page_size)
        if violations:
            raise InvalidArgument(violations)
        lower = max(lower, now - self._retention - RETENTION_GRACE)
        upper = min(upper, now + MAX_CLOCK_SKEW)
        level = LogLevel(min_level) if min_level else LogLevel.DEBUG
        # The token is bound to the query as the client phrased it, so "now" may move between pages without
        # invalidating it; the resolved bounds travel inside the token.
        query = {"service": service, "from": time_from, "to": time_to, "min_level": int(level)}
        position = self._tokens.decode(page_token, query)
        before: LogCursor | None = None
        if position is not None:
            before, lower, upper = _position(position)
        rows = await self._store.query(service, lower, upper, level, before, limit + 1) if lower < upper else []
        items = rows[:limit]
        token = ""
        if len(rows) > limit:
            last = items[-1]
            token = self._tokens.encode(
                query,
                {"time": last.time.isoformat(), "id": str(last.id), "from": lower.isoformat(), "to": upper.isoformat()},
            )
        return LogPage(items, token)

    async def trace_logs(self, trace_id: str) -> list[LogEntry]:
        if not TRACE_ID_PATTERN.fullmatch(trace_id):
            raise InvalidArgument([FieldViolation("trace_id", "must be 32 lowercase hex digits (W3C trace id)")])
        return await self._store.trace(trace_id, MAX_TRACE_ENTRIES)


def _position(position: dict[str, object]) -> tuple[LogCursor, datetime, datetime]:
    try:
        return (
            LogCursor(datetime.fromisoformat(str(position["time"])), uuid.UUID(str(position["id"]))),
            datetime.fromisoformat(str(position["from"])),
            datetime.fromisoformat(str(position["to"])),
        )
    except (KeyError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "page token is not valid")]) from None
