"""Wiring a migrating table into a service: its seeded mode, the watcher that follows it, the relay and watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta

import asyncpg

from migration.control import ControlPlane, load_settings_file
from migration.hybrid import HybridSettings, HybridTable
from migration.journal import DEFAULT_LEASE, Journal
from migration.relay import Relay, Replicate
from migration.settings import MigratingTableSettings
from migration.stages import TableMode
from migration.watchdog import Watchdog
from migration.watcher import ModeWatcher

logger = logging.getLogger(__name__)

# How often a replica looks at its table's journal for loanbook.journal.backlog / oldest_age: one small aggregate
# query per table, about as often as Prometheus scrapes.
BACKLOG_SAMPLE_SECONDS = 15.0
# How often a replica drops key history past its retention: one indexed delete per table.
HISTORY_PRUNE_SECONDS = 300.0


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
    stack.push_async_callback(hybrid.wait_for_copies)  # before the pool closes: each is bounded by its timeouts
    _in_background(sample_backlog(hybrid.journal, BACKLOG_SAMPLE_SECONDS), f"{table}-backlog-sampler", stack)
    retention = timedelta(hours=settings.key_history_retention_hours)
    _in_background(forget_old_history(hybrid.journal, retention, HISTORY_PRUNE_SECONDS), f"{table}-history", stack)
    watchdog = Watchdog(hybrid, control, pool, dsn, settings.watchdog_settings())
    _in_background(watchdog.run(), f"{table}-watchdog", stack)
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
    relay = Relay(hybrid.journal, replicate, mode=lambda: hybrid.mode)
    _in_background(relay.run(), f"{hybrid.name}-relay", stack)


async def sample_backlog(journal: Journal, every_seconds: float) -> None:
    """Looks at the journal now and then, so the backlog gauges have a recent value (Journal.backlog feeds them)
    whether or not this replica runs a relay. Every replica reports it; dashboards take the max."""
    while True:
        try:
            await journal.backlog()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            # The gauges keep the last sample a while, then report nothing (migration.observability).
            logger.warning("could not sample the journal backlog: %s", type(error).__name__)
        await asyncio.sleep(every_seconds)


async def forget_old_history(journal: Journal, retention: timedelta, every_seconds: float) -> None:
    """Keeps the key history within its retention: what no verification covered by then is dropped, and the gap
    recorded (Journal.forget_history). Every replica does it; a second delete finds nothing."""
    while True:
        try:
            if dropped := await journal.forget_history(retention):
                logger.warning(
                    "key history past its retention dropped: the next verification must be a full one",
                    extra={"table": journal.table, "rows": dropped},
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.warning("could not trim the key history: %s", type(error).__name__)
        await asyncio.sleep(every_seconds)


def _in_background(work: Coroutine[object, object, None], name: str, stack: AsyncExitStack) -> None:
    """Runs `work` as a task until `stack` closes."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
