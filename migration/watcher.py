"""Keeps a replica's view of the table modes current: LISTEN for changes, with a periodic re-read as backstop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext

from chassis.telemetry import ATTR_MIGRATION_STAGE
from migration.control import CHANNEL, ControlPlane
from migration.journal import linked_context
from migration.observability import ATTR_COLLECTION, ATTR_FALLBACK, ATTR_FROM_STAGE, unwatch_modes, watch_modes
from migration.stages import Stage, TableMode

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("loanbook.migration")

Listener = Callable[[TableMode], None]


class ModeWatcher:
    """`mode(table)` answers from memory; a NOTIFY from any replica's change triggers a re-read.

    The re-read, not the notification's payload, is what counts, so a lost or reordered notification
    cannot leave a stale mode behind: the periodic poll and every reconnect re-read everything too.
    """

    def __init__(self, dsn: str, control: ControlPlane, poll_interval: float = 5.0) -> None:
        self._dsn = dsn
        self._control = control
        self._poll_interval = poll_interval
        self._modes: dict[str, TableMode] = {}
        self._listeners: list[Listener] = []
        self._connection: asyncpg.Connection | None = None
        self._poller: asyncio.Task[None] | None = None
        self._refresh_lock = asyncio.Lock()
        watch_modes(self)  # loanbook.migration.stage_index reports what this replica runs

    def current_modes(self) -> Mapping[str, TableMode]:
        """Every configured table's mode as this replica runs it now."""
        return dict(self._modes)

    def mode(self, table: str) -> TableMode:
        # A table nobody configured yet is not migrating: PostgreSQL only.
        return self._modes.get(table) or TableMode(table, Stage.POSTGRES_ONLY, fallback=True)

    def subscribe(self, listener: Listener) -> None:
        """Called with the new mode whenever a table's mode changes in this replica's view."""
        self._listeners.append(listener)

    async def start(self) -> None:
        await self._listen()
        await self.refresh()
        self._poller = asyncio.create_task(self._poll(), name="migration-mode-poller")

    async def stop(self) -> None:
        unwatch_modes(self)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

    async def refresh(self, cause: SpanContext | None = None) -> None:
        """Re-reads every mode; `cause`: the span of the change whose notification asked for it, to link to."""
        async with self._refresh_lock:
            modes = await self._control.live_modes()
            for table, mode in modes.items():
                previous = self._modes.get(table)
                self._modes[table] = mode
                if previous is None or (previous.revision, previous.postgres_complete) != (
                    mode.revision,
                    mode.postgres_complete,
                ):
                    _announce(previous, mode, cause)
                    for listener in self._listeners:
                        listener(mode)

    async def _listen(self) -> None:
        # A dedicated connection: LISTEN belongs to a session, and pooled connections are shared.
        self._connection = await asyncpg.connect(self._dsn)
        await self._connection.add_listener(CHANNEL, self._notified)

    def _notified(
        self,
        connection: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any],
        pid: int,
        channel: str,
        payload: object,
        /,
    ) -> None:
        asyncio.get_running_loop().create_task(self._refresh_logging_errors(_change_context(payload)))

    async def _refresh_logging_errors(self, cause: SpanContext | None) -> None:
        try:
            await self.refresh(cause)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.warning("could not re-read migration modes: %s", error)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                if self._connection is None or self._connection.is_closed():
                    logger.warning("migration mode listener lost its connection; reconnecting")
                    await self._listen()
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("migration mode poll failed: %s", error)


def _change_context(payload: object) -> SpanContext | None:
    """The span of the change a notification announces (ControlPlane.change sends its traceparent along)."""
    try:
        document = json.loads(payload) if isinstance(payload, str) else None
    except ValueError:
        return None
    traceparent = document.get("traceparent") if isinstance(document, dict) else None
    return linked_context(traceparent if isinstance(traceparent, str) else None)


def _announce(previous: TableMode | None, mode: TableMode, cause: SpanContext | None) -> None:
    """Logs the mode this replica now runs, and marks it in the traces: the watcher has no request span to add the
    event to, so a short span of its own carries it, a root linked to the change that caused it (when known)."""
    logger.info(
        "migration mode in force",
        extra={
            "table": mode.table,
            "stage": mode.stage.value,
            "fallback": mode.fallback,
            "postgres_complete": mode.postgres_complete,
        },
    )
    change: dict[str, str | bool | int] = {
        ATTR_COLLECTION: mode.table,
        ATTR_MIGRATION_STAGE: mode.stage.value,
        ATTR_FALLBACK: "true" if mode.fallback else "false",
        "loanbook.migration.postgres_complete": mode.postgres_complete,
        "loanbook.migration.revision": mode.revision,
    }
    if previous is not None:
        change[ATTR_FROM_STAGE] = previous.stage.value
    with tracer.start_as_current_span(
        "migration.mode_change",
        context=otel_context.Context(),
        attributes=change,
        links=[Link(cause)] if cause is not None else None,
    ) as span:
        span.add_event("migration mode in force", change)
