"""Pydantic mirrors of loanbook.logging.v1's protobuf JSON (lowerCamelCase), for validation and OpenAPI.

The same approach as gateway/customer_models.py; tests/unit/test_customer_models.py checks these mirrors against
the messages field by field. The gateway checks the HTTP shape only (types, level names, time zones, unknown
fields); the batch rules (sizes, names, ids, clock skew) are the logging service's, and its violations come back
as `entries[i].<field>` in these JSON names. REST-only choice: `GET /v1/logs` answers both QueryLogs and
GetTraceLogs with one shape, `LogsPage` (a trace is never paged, so its `nextPageToken` is empty).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field

from gateway.customer_models import ProtoJson


class LogLevel(StrEnum):
    UNSPECIFIED = "LOG_LEVEL_UNSPECIFIED"
    DEBUG = "LOG_LEVEL_DEBUG"
    INFO = "LOG_LEVEL_INFO"
    WARNING = "LOG_LEVEL_WARNING"
    ERROR = "LOG_LEVEL_ERROR"
    CRITICAL = "LOG_LEVEL_CRITICAL"


# Resources (responses)


class LogEntry(ProtoJson):
    id: str = ""
    time: datetime | None = None
    service: str = ""
    level: LogLevel = LogLevel.UNSPECIFIED
    message: str = ""
    attributes: dict[str, str] = {}
    trace_id: str = ""
    span_id: str = ""


class WriteLogsResponse(ProtoJson):
    accepted_count: int = Field(default=0, description="entries stored (all of the batch: a batch is all or nothing)")


class QueryLogsResponse(ProtoJson):
    entries: list[LogEntry] = []
    next_page_token: str = ""


class GetTraceLogsResponse(ProtoJson):
    entries: list[LogEntry] = []


class LogsPage(QueryLogsResponse):
    """What `GET /v1/logs` answers: a page of one service's entries (newest first), or one trace's entries (oldest
    first, whole, `nextPageToken` empty)."""


# Request bodies


class LogEntryBody(ProtoJson):
    """One entry as a service sends it: `id` (a UUID) and `time` may be left out; the service assigns them."""

    id: str = Field(default="", description="a UUID; entries re-sent with the same id are stored once")
    time: AwareDatetime | None = Field(default=None, description="RFC 3339 with a time zone; omitted: now")
    service: str = ""
    level: LogLevel = LogLevel.UNSPECIFIED
    message: str = ""
    attributes: dict[str, str] = {}
    trace_id: str = Field(default="", description="W3C trace id, 32 lowercase hex digits, or empty")
    span_id: str = Field(default="", description="W3C span id, 16 lowercase hex digits, or empty")


class WriteLogsBody(ProtoJson):
    entries: list[LogEntryBody] = Field(default=[], description="1 to 1000 entries, stored all or none")
    validate_only: bool = Field(
        default=False, description="check the batch and answer as a write would, but store nothing"
    )
