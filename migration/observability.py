"""The migration engine's span attributes and metric instruments, named as docs/metric-catalogue says."""

from __future__ import annotations

import time
import traceback
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from chassis.errors import Unavailable
from chassis.telemetry import ATTR_MIGRATION_STAGE, ATTR_STORE_BACKEND
from migration.stages import ORDER, Backend, TableMode

ATTR_DB_SYSTEM: Final = "db.system"
ATTR_COLLECTION: Final = "db.collection.name"
ATTR_OPERATION: Final = "db.operation.name"
ATTR_ROUTE_REASON: Final = "loanbook.route.reason"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_OUTCOME: Final = "loanbook.outcome"
# A store call whose answer nobody used (its read was cancelled): "discarded" or "cancelled".
ATTR_STORE_OUTCOME: Final = "loanbook.store.outcome"
ATTR_SHADOW_RESULT: Final = "loanbook.shadow.result"
ATTR_COPY_PATH: Final = "loanbook.copy.path"
ATTR_FROM_STAGE: Final = "loanbook.migration.from_stage"
ATTR_FALLBACK: Final = "loanbook.migration.fallback"

DB_SYSTEM: Final = {Backend.POSTGRES: "postgresql", Backend.DYNAMODB: "dynamodb"}


class Route(StrEnum):
    """Why a store served or was called (`loanbook.route.reason`)."""

    STAGE = "stage"
    PENDING_WRITE = "pending_write"
    SETTLING = "settling"
    FALLBACK = "fallback"
    BREAKER_OPEN = "breaker_open"
    MERGED = "merged"
    SHADOW = "shadow"


def store_attributes(table: str, operation: str, backend: Backend, stage: str, reason: Route) -> dict[str, str]:
    """The attributes a store call's span and duration share."""
    return {
        ATTR_DB_SYSTEM: DB_SYSTEM[backend],
        ATTR_COLLECTION: table,
        ATTR_OPERATION: operation,
        ATTR_STORE_BACKEND: backend.value,
        ATTR_MIGRATION_STAGE: stage,
        ATTR_ROUTE_REASON: reason.value,
    }


def error_type(error: BaseException) -> str:
    """`error.type` of a failed store call: timeout, unavailable, breaker_open, or the exception's class."""
    known = getattr(error, "error_type", None)
    if isinstance(known, str):
        return known
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, Unavailable | OSError):
        return "unavailable"
    return type(error).__name__


def mark_failed(span: trace.Span, error: BaseException, kind: str) -> None:
    """ERROR status with `error.type`, and the exception as an event of its types and stack only: a store's message
    may quote what it was given (a key, an item), so no message is recorded."""
    if not span.is_recording():
        return
    span.set_attribute(ATTR_ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, kind))
    causes: list[str] = []
    cause: BaseException | None = error.__cause__
    while cause is not None and len(causes) < 5:
        causes.append(_qualified(cause))
        cause = cause.__cause__
    span.add_event(
        "exception",
        {
            "exception.type": _qualified(error),
            "exception.stacktrace": "".join(traceback.format_tb(error.__traceback__)),
            "loanbook.exception.causes": causes,
        },
    )


def _qualified(error: BaseException) -> str:
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


meter = metrics.get_meter("loanbook.migration")

operation_duration = meter.create_histogram(
    "db.client.operation.duration",
    unit="s",
    description="Duration of store calls of migrating tables, by store, stage and why the store was called",
)
store_errors = meter.create_counter(
    "loanbook.store.errors", unit="{error}", description="Failed store calls (and DynamoDB calls the breaker refused)"
)
store_fallbacks = meter.create_counter(
    "loanbook.store.fallbacks", unit="{read}", description="Reads PostgreSQL answered because DynamoDB was not usable"
)
relay_copies = meter.create_counter(
    "loanbook.relay.copies", unit="{entry}", description="Journal entries the relay copied to DynamoDB, or failed to"
)
relay_lag = meter.create_histogram(
    "loanbook.relay.lag", unit="s", description="From a journal entry's write to the relay's copy of it"
)
inline_copy_failures = meter.create_counter(
    "loanbook.inline_copy.failures", unit="{write}", description="Writes whose inline DynamoDB copy failed (relay's)"
)
shadow_comparisons = meter.create_counter(
    "loanbook.shadow.comparisons", unit="{comparison}", description="Shadow reads compared with the served answer"
)


# --- observable gauges: fed by registries of the live objects (weakly: tests build and drop many) ------------


class ModeSource(Protocol):
    def current_modes(self) -> Mapping[str, TableMode]: ...


class Breaker(Protocol):
    @property
    def opened(self) -> bool: ...


_breakers: weakref.WeakKeyDictionary[Breaker, str] = weakref.WeakKeyDictionary()
_mode_sources: weakref.WeakSet[ModeSource] = weakref.WeakSet()


@dataclass(frozen=True)
class _BacklogSample:
    pending: int
    oldest_age_seconds: float
    at: float


_backlogs: dict[str, _BacklogSample] = {}
# A sample older than this is no longer reported: whatever took it has stopped (or cannot reach PostgreSQL).
BACKLOG_SAMPLE_MAX_AGE_SECONDS: Final = 120.0


def watch_breaker(table: str, breaker: Breaker) -> None:
    _breakers[breaker] = table


def watch_modes(source: ModeSource) -> None:
    _mode_sources.add(source)


def unwatch_modes(source: ModeSource) -> None:
    _mode_sources.discard(source)


def sampled_backlog(table: str, pending: int, oldest_age_seconds: float) -> None:
    """The latest look at a table's journal, reported until a newer one (or until it goes stale)."""
    _backlogs[table] = _BacklogSample(pending, oldest_age_seconds, time.monotonic())


def _breaker_open(options: CallbackOptions) -> Iterable[Observation]:
    opened: dict[str, int] = {}
    for breaker, table in list(_breakers.items()):
        opened[table] = max(opened.get(table, 0), int(breaker.opened))
    return [Observation(value, {ATTR_COLLECTION: table}) for table, value in opened.items()]


def _fresh_backlogs() -> dict[str, _BacklogSample]:
    oldest = time.monotonic() - BACKLOG_SAMPLE_MAX_AGE_SECONDS
    return {table: sample for table, sample in list(_backlogs.items()) if sample.at >= oldest}


def _journal_backlog(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(s.pending, {ATTR_COLLECTION: table}) for table, s in _fresh_backlogs().items()]


def _journal_oldest_age(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(s.oldest_age_seconds, {ATTR_COLLECTION: table}) for table, s in _fresh_backlogs().items()]


def _stage_index(options: CallbackOptions) -> Iterable[Observation]:
    modes: dict[str, TableMode] = {}
    for source in list(_mode_sources):
        for table, mode in source.current_modes().items():
            # Replicas in one process (tests) may lag a moment: the newest revision is the mode in force.
            if table not in modes or mode.revision > modes[table].revision:
                modes[table] = mode
    return [
        Observation(
            ORDER.index(mode.stage),
            {
                ATTR_COLLECTION: table,
                ATTR_MIGRATION_STAGE: mode.stage.value,
                ATTR_FALLBACK: "true" if mode.fallback else "false",
            },
        )
        for table, mode in modes.items()
    ]


meter.create_observable_gauge(
    "loanbook.dynamodb.breaker.open", [_breaker_open], description="1 while DynamoDB's circuit breaker is open"
)
meter.create_observable_gauge(
    "loanbook.journal.backlog", [_journal_backlog], unit="{entry}", description="Journal entries not copied yet"
)
meter.create_observable_gauge(
    "loanbook.journal.oldest_age", [_journal_oldest_age], unit="s", description="Age of the oldest journal entry"
)
meter.create_observable_gauge(
    "loanbook.migration.stage_index",
    [_stage_index],
    description="The table's stage as this replica runs it: 0 postgres_only .. 5 dynamo_only",
)
