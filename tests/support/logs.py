"""Log entries for tests: fresh service names, trace ids, recent hours and valid entries."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.ids import new_id
from services.logging.domain import LogEntry, LogLevel

RETENTION_DAYS = 30


def recent_hour() -> datetime:
    """A few hours ago, on the hour: inside the retention window, with room for entries across hours."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def a_service() -> str:
    """A fresh service name, so tests sharing the stores never see each other's entries."""
    return f"svc-{secrets.token_hex(4)}"


def a_trace() -> str:
    return secrets.token_hex(16)


def an_entry(service: str, time: datetime, level: LogLevel = LogLevel.INFO, **changes: Any) -> LogEntry:
    fields: dict[str, Any] = {
        "id": new_id(),
        "time": time,
        "service": service,
        "level": level,
        "message": f"event at {time.isoformat()}",
        "attributes": {"component": "test", "note": "naïve ✓"},
        "trace_id": "",
        "span_id": "",
    }
    fields.update(changes)
    return LogEntry(**fields)
