"""What the payment and log harnesses share: a replica's parts, stage changes, and the control plane around them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Generic, TypeVar

import asyncpg

from migration.control import ControlPlane
from migration.hybrid import HybridSettings, HybridTable
from migration.relay import Relay, Replicate
from migration.runtime import hybrid_table
from migration.stages import Stage, TableMode
from migration.watcher import ModeWatcher
from tests.support.stages import follow_stage, stand_in_for_a_verified_reverse_sync

StoreT = TypeVar("StoreT")


@dataclass
class HybridReplica(Generic[StoreT]):
    """One service replica's view: its mode watcher, hybrid table, store and relay."""

    watcher: ModeWatcher
    hybrid: HybridTable
    store: StoreT
    relay: Relay


async def dual_writing_control(pool: asyncpg.Pool, table: str) -> ControlPlane:
    """A control plane without guards with `table` dual-writing and PostgreSQL complete, as a harness starts."""
    # Tests move through every stage; the dynamo_only guard (a clean verification) is the toolkit's business and
    # has its own test in test_migration_control.
    control = ControlPlane(pool, guards=())
    await control.seed({table: TableMode(table, Stage.DUAL_WRITE, True)}, who="test")
    await stand_in_for_a_verified_reverse_sync(pool, table)  # whatever an earlier module left behind
    return control


class HybridHarness(Generic[StoreT]):
    """Replicas of one migrated table built as its service builds them, and the stage changes they follow."""

    table: ClassVar[str]
    index_read_kinds: ClassVar[Sequence[str]]
    postgres_dsn: str
    pool: asyncpg.Pool
    control: ControlPlane
    replicas: list[HybridReplica[StoreT]]

    async def _hybrid(self, settings: HybridSettings, settle_seconds: float) -> tuple[ModeWatcher, HybridTable]:
        """A new replica's started mode watcher and its hybrid table."""
        watcher = ModeWatcher(self.postgres_dsn, self.control, poll_interval=30)
        await watcher.start()
        hybrid = hybrid_table(
            self.table,
            lambda: watcher.mode(self.table),
            self.pool,
            settings,
            settle=timedelta(seconds=settle_seconds),
            index_read_kinds=self.index_read_kinds,
            lease=timedelta(seconds=1),
        )
        return watcher, hybrid

    def _joined(
        self, watcher: ModeWatcher, hybrid: HybridTable, store: StoreT, replicate: Replicate
    ) -> HybridReplica[StoreT]:
        """The replica made of these parts (its relay replicates through `replicate`), now one of the harness's."""
        replica = HybridReplica(watcher, hybrid, store, Relay(hybrid.journal, replicate))
        self.replicas.append(replica)
        return replica

    async def set_stage(self, stage: Stage, fallback: bool = True, *, postgres_complete: bool = True) -> None:
        """Change the mode through the control plane and wait until every replica follows (≤ 1 s); see
        follow_stage for `postgres_complete`."""
        watchers = [r.watcher for r in self.replicas]
        await follow_stage(
            self.pool, self.control, watchers, self.table, stage, fallback, postgres_complete=postgres_complete
        )

    async def stop(self) -> None:
        """Stops every replica and forgets the table's journal, so the next harness starts clean."""
        for replica in self.replicas:
            await replica.hybrid.wait_for_shadow_reads()
            await replica.watcher.stop()
        await self.pool.execute("DELETE FROM migration.journal WHERE table_name = $1", self.table)
        await self.pool.execute("DELETE FROM migration.journal_settling WHERE table_name = $1", self.table)
