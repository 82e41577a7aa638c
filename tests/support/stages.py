"""Driving a migrating table's stage in tests, with the hybrid harnesses' generous budgets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

from migration.control import ControlPlane, reverse_sync_pending
from migration.hybrid import HybridSettings
from migration.stages import Stage
from migration.watcher import ModeWatcher

if TYPE_CHECKING:
    pass


# The hybrid harnesses' budgets: generous, since tests of the healthy path assert which store served and that inline
# copies landed, and on a busy CI machine a DynamoDB Local read has overrun 0.2 s; outage tests pass their own. Every
# read is shadowed.
TEST_HYBRID_SETTINGS = HybridSettings(
    dynamo_timeout_seconds=2.0, shadow_budget_seconds=2.0, breaker_recovery_seconds=1.0, shadow_sample_ratio=1.0
)


async def stand_in_for_a_verified_reverse_sync(pool: asyncpg.Pool, table: str) -> bool:
    """Records a clean reverse sync and full verification covering the table's last move out of dynamo_only, so
    PostgreSQL counts as complete again; for harness tests that walk stages freely (without guards) and are not about
    the way back. False if nothing was pending."""
    if await reverse_sync_pending(pool, table) is None:
        return False
    await pool.execute(
        """INSERT INTO migration.reverse_syncs (table_name, stage, started_by, covers_change, status, finished_at)
           SELECT $1, 'dynamo_primary', 'test', max(id), 'finished', clock_timestamp() FROM migration.mode_changes
           WHERE table_name = $1 AND from_stage = 'dynamo_only' AND to_stage <> 'dynamo_only'""",
        table,
    )
    await pool.execute(
        """INSERT INTO migration.verifications (table_name, full_scan, clean, rows_checked, differences, started_at)
           VALUES ($1, true, true, 0, 0, clock_timestamp())""",
        table,
    )
    return True


async def follow_stage(
    pool: asyncpg.Pool,
    control: ControlPlane,
    watchers: Sequence[ModeWatcher],
    table: str,
    stage: Stage,
    fallback: bool,
    *,
    postgres_complete: bool = True,
) -> None:
    """Change a table's mode (no guards in harnesses) and wait until every replica's watcher follows (≤ 1 s).

    Leaving dynamo_only leaves PostgreSQL incomplete until a verified reverse sync; unless `postgres_complete` is
    false, a stand-in for that sync is recorded, so tests of other things see the usual behaviour."""
    await control.change(table, stage=stage, fallback=fallback, who="test")
    if postgres_complete and stage is not Stage.DYNAMO_ONLY and await stand_in_for_a_verified_reverse_sync(pool, table):
        for watcher in watchers:
            await watcher.refresh()  # the stand-in changes no mode, so nothing announces it
    wanted = (stage, fallback, postgres_complete and stage is not Stage.DYNAMO_ONLY)
    async with asyncio.timeout(1.0):
        while any(
            (w.mode(table).stage, w.mode(table).fallback, w.mode(table).postgres_complete) != wanted for w in watchers
        ):
            await asyncio.sleep(0.01)
