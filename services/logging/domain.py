"""Log entries, levels and the rules a batch must pass before anything is stored; no gRPC, no store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from chassis.errors import FieldViolation
from chassis.ids import new_id

MAX_BATCH_ENTRIES = 1000
MAX_SERVICE_LENGTH = 64
MAX_MESSAGE_BYTES = 8 * 1024
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY_LENGTH = 64
MAX_ATTRIBUTE_VALUE_BYTES = 1024
# Log text may hold any character but NUL (U+0000): neither PostgreSQL text nor jsonb can store it, and a batch
# must be refused as bad input up front rather than fail in the store (or only once the journal copies it).
NUL = "\x00"
NUL_REFUSED = "must not contain NUL characters (U+0000)"
# Clocks drift; a log line from a few minutes ahead is a skewed clock, one from hours ahead is a bug.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# A rejected batch lists at most this many problems: enough to fix it, small enough to read.
MAX_VIOLATIONS = 50

# Service names and attribute keys end up in DynamoDB partition keys ("<service>#<hour>#<shard>") and URLs.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TRACE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
SPAN_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


class LogLevel(IntEnum):
    """Ordered, so "at least WARNING" is a comparison; the numbers are the proto enum's."""

    DEBUG = 1
    INFO = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


@dataclass(frozen=True)
class LogEntry:
    id: uuid.UUID
    time: datetime
    service: str
    level: LogLevel
    message: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    trace_id: str = ""  # 32 lowercase hex digits (W3C), or empty
    span_id: str = ""  # 16 lowercase hex digits, or empty


@dataclass(frozen=True)
class LogBatch:
    """Entries written together; `id` ties the PostgreSQL rows to the journal entry that copies them."""

    id: uuid.UUID
    entries: Sequence[LogEntry]


@dataclass(frozen=True, order=True)
class LogCursor:
    """The last entry of a page in (time, id) order; the next page continues strictly past it."""

    time: datetime
    id: uuid.UUID


def entry_order(entry: LogEntry) -> tuple[datetime, uuid.UUID]:
    """The one order every store shares: time, then id (ties in time are common in logs)."""
    return entry.time, entry.id


def name_problem(value: str, what: str) -> str | None:
    if not value:
        return "is required"
    if len(value) > MAX_SERVICE_LENGTH:
        return f"must be at most {MAX_SERVICE_LENGTH} characters"
    if not NAME_PATTERN.fullmatch(value):
        return f"{what} may contain only letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


@dataclass(frozen=True)
class EntryCandidate:
    """One entry as a client sent it, before the rules: `level` may be any number, `time` may be missing."""

    id: str
    time: datetime | None
    service: str
    level: int
    message: str
    attributes: Mapping[str, str]
    trace_id: str
    span_id: str
    # Why `time` could not be read (a Timestamp out of range), reported with the entry's other problems.
    time_problem: str = ""


def check_batch(
    candidates: Sequence[EntryCandidate], now: datetime, retention: timedelta
) -> tuple[list[LogEntry], list[FieldViolation]]:
    """Entries ready to store, or every problem found (field `entries[i].<field>`); a batch is all or nothing."""
    violations: list[FieldViolation] = []
    if not candidates:
        return [], [FieldViolation("entries", "a batch needs at least one entry")]
    if len(candidates) > MAX_BATCH_ENTRIES:
        return [], [FieldViolation("entries", f"a batch holds at most {MAX_BATCH_ENTRIES} entries")]
    entries: list[LogEntry] = []
    oldest = now - retention
    for index, candidate in enumerate(candidates):
        problems = _entry_problems(candidate, now, oldest, retention)
        violations.extend(FieldViolation(f"entries[{index}].{name}", reason) for name, reason in problems)
        if len(violations) >= MAX_VIOLATIONS:
            return [], violations[:MAX_VIOLATIONS]
        if not problems:
            entries.append(
                LogEntry(
                    id=uuid.UUID(candidate.id) if candidate.id else new_id(),
                    time=(candidate.time or now).astimezone(UTC),
                    service=candidate.service,
                    level=LogLevel(candidate.level),
                    message=candidate.message,
                    attributes=dict(candidate.attributes),
                    trace_id=candidate.trace_id,
                    span_id=candidate.span_id,
                )
            )
    return (entries, []) if not violations else ([], violations)


def _entry_problems(
    candidate: EntryCandidate, now: datetime, oldest: datetime, retention: timedelta
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if candidate.id:
        try:
            uuid.UUID(candidate.id)
        except ValueError:
            problems.append(("id", "must be a UUID, or empty to let the service assign one"))
    if candidate.time_problem:
        problems.append(("time", candidate.time_problem))
    elif candidate.time is not None:
        if candidate.time > now + MAX_CLOCK_SKEW:
            problems.append(("time", f"is more than {_minutes(MAX_CLOCK_SKEW)} minutes in the future"))
        elif candidate.time < oldest:
            problems.append(("time", f"is older than the {retention.days}-day retention"))
    if problem := name_problem(candidate.service, "a service name"):
        problems.append(("service", problem))
    if candidate.level not in LogLevel._value2member_map_:
        problems.append(("level", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"))
    if len(candidate.message.encode()) > MAX_MESSAGE_BYTES:
        problems.append(("message", f"must be at most {MAX_MESSAGE_BYTES} bytes (UTF-8)"))
    elif NUL in candidate.message:
        problems.append(("message", NUL_REFUSED))
    problems.extend(_attribute_problems(candidate.attributes))
    if candidate.trace_id and not TRACE_ID_PATTERN.fullmatch(candidate.trace_id):
        problems.append(("trace_id", "must be 32 lowercase hex digits (W3C trace id)"))
    elif candidate.trace_id == "0" * 32:
        problems.append(("trace_id", "must not be all zeros (an invalid W3C trace id)"))
    if candidate.span_id:
        if not SPAN_ID_PATTERN.fullmatch(candidate.span_id):
            problems.append(("span_id", "must be 16 lowercase hex digits (W3C span id)"))
        elif not candidate.trace_id:
            problems.append(("span_id", "needs a trace_id"))
    return problems


def _attribute_problems(attributes: Mapping[str, str]) -> list[tuple[str, str]]:
    if len(attributes) > MAX_ATTRIBUTES:
        return [("attributes", f"at most {MAX_ATTRIBUTES} attributes per entry")]
    problems: list[tuple[str, str]] = []
    for key, value in attributes.items():
        if len(key) > MAX_ATTRIBUTE_KEY_LENGTH or not NAME_PATTERN.fullmatch(key):
            problems.append(
                (
                    f"attributes[{key[:MAX_ATTRIBUTE_KEY_LENGTH]!r}]",
                    f"keys are 1-{MAX_ATTRIBUTE_KEY_LENGTH} letters, digits, '.', '_' or '-'",
                )
            )
        elif len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
            problems.append((f"attributes[{key!r}]", f"values are at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes (UTF-8)"))
        elif NUL in value:
            problems.append((f"attributes[{key!r}]", NUL_REFUSED))
    return problems


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)
