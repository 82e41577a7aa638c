"""Wiring a migrating table into a service: its seeded mode, the watcher that follows it, the relay task."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg

from migration.control import ControlPlane, load_settings_file
from migration.hybrid import HybridSettings, HybridTable
from migration.journal import DEFAULT_LEASE, Journal
from migration.relay import Relay, Replicate
from migration.settings import MigratingTableSettings
from migration.stages import TableMode
from migration.watcher import ModeWatcher


async def open_hybrid_table(
    table: str,
    settings: MigratingTableSettings,
    dsn: str,
    pool: asyncpg.Pool,
    stack: AsyncExitStack,
    *,
    who: str,
    index_read_kinds: Sequence[str],
) -> tuple[HybridTable, ControlPlane]:
    """The table's stage machinery, following its mode live; torn down by `stack` (shadow reads finish first).

    `index_read_kinds`: the kinds of read keys the table's store serves from an eventually consistent GSI; only
    they stay routed to PostgreSQL while a fresh copy settles (the store reads everything else consistently)."""
    control = ControlPlane(pool)
    if settings.migration_settings_file is not None:
        modes = load_settings_file(settings.migration_settings_file)
        await control.seed({t: m for t, m in modes.items() if t == table}, who=f"{who} settings file")
    # Only this service's table: another table's own service may still have a settings file to seed it from.
    await control.ensure_defaults(who=f"{who} start-up", tables=[table])
    watcher = ModeWatcher(dsn, control, poll_interval=settings.mode_poll_seconds)
    await watcher.start()
    stack.push_async_callback(watcher.stop)
    hybrid = hybrid_table(
        table,
        lambda: watcher.mode(table),
        pool,
        settings.hybrid_settings(),
        settle=timedelta(seconds=settings.journal_settle_seconds),
        index_read_kinds=index_read_kinds,
    )
    stack.push_async_callback(hybrid.wait_for_shadow_reads)
    return hybrid, control


def hybrid_table(
    table: str,
    mode: Callable[[], TableMode],
    pool: asyncpg.Pool,
    settings: HybridSettings,
    *,
    settle: timedelta,
    index_read_kinds: Sequence[str],
    lease: timedelta = DEFAULT_LEASE,
) -> HybridTable:
    """A table's stage machinery and journal from opened parts: what a service runs, and what tests build theirs
    with (`mode` is a watcher's view of the table in a service, whatever a test says in a test)."""
    journal = Journal(pool, table, lease=lease, settle=settle, settling_kinds=index_read_kinds)
    return HybridTable(table, mode, pool, journal, settings)


def start_relay(hybrid: HybridTable, replicate: Replicate, stack: AsyncExitStack) -> None:
    """Copies the table's journaled writes to DynamoDB in the background until `stack` closes."""
    relay = asyncio.create_task(Relay(hybrid.journal, replicate).run(), name=f"{hybrid.name}-relay")

    async def stop_relay() -> None:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay

    stack.push_async_callback(stop_relay)
