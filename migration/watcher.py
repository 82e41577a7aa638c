"""Keeps a replica's view of the table modes current: LISTEN for changes, with a periodic re-read as backstop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from migration.control import CHANNEL, ControlPlane
from migration.stages import Stage, TableMode

logger = logging.getLogger(__name__)

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
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

    async def refresh(self) -> None:
        async with self._refresh_lock:
            modes = await self._control.live_modes()
            for table, mode in modes.items():
                previous = self._modes.get(table)
                self._modes[table] = mode
                if previous is None or (previous.revision, previous.postgres_complete) != (
                    mode.revision,
                    mode.postgres_complete,
                ):
                    logger.info(
                        "migration mode in force",
                        extra={
                            "table": table,
                            "stage": mode.stage.value,
                            "fallback": mode.fallback,
                            "postgres_complete": mode.postgres_complete,
                        },
                    )
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
        asyncio.get_running_loop().create_task(self._refresh_logging_errors())

    async def _refresh_logging_errors(self) -> None:
        try:
            await self.refresh()
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
