"""Work shared by several processes through PostgreSQL: units of a run leased one at a time, renewed, taken over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from migration.table_spec import Executor

# A holder renews its lease this many times per lease period, so one slow renewal does not lose it.
RENEWALS_PER_LEASE = 3
# How often a process with nothing to claim looks again while other processes hold the run's last units.
IDLE_POLL_SECONDS = 1.0


class LeaseLost(RuntimeError):
    """Another process took over the unit (this one's lease had expired); its work on the unit must stop."""


@dataclass(frozen=True)
class UnitQueue:
    """A table of a run's units: `run_id`, a unit number column, `done`, `leased_by`, `lease_expires_at`."""

    table: str
    number: str


BACKFILL_RANGES = UnitQueue("migration.backfill_ranges", "range_no")
VERIFY_UNITS = UnitQueue("migration.verify_units", "unit_no")


def holder_name() -> str:
    """Who holds a lease: host (a pod's name in Kubernetes) and process, unique per invocation."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Outstanding:
    """A run's units not done yet, and how many of those other processes hold under a live lease."""

    units: int
    leased: int
    holders: tuple[str, ...]


class Leases:
    """One process's view of a run's unit queue. A unit is claimed when it is not done and nobody holds a live
    lease on it; the holder renews the lease while it works (and with every checkpoint), so a process that dies
    loses its units after `lease_seconds` and another one resumes them from their last checkpoint. Every write of
    progress is fenced by `leased_by = holder`: a process whose lease was taken over cannot move a unit on."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        queue: UnitQueue,
        run_id: int,
        holder: str,
        lease_seconds: float,
        *,
        only: str = "TRUE",
    ) -> None:
        """`only`: an SQL condition (a constant of the caller's, never input) picking which units this one claims."""
        self.pool, self.queue, self.run_id = pool, queue, run_id
        self.holder, self.lease_seconds, self.only = holder, lease_seconds, only

    async def claim(self) -> asyncpg.Record | None:
        """The next unit nobody holds, now leased to this process; None when there is none right now."""
        table, number = self.queue.table, self.queue.number
        # SKIP LOCKED: processes claiming at once each get a different unit instead of queueing on one row.
        return await self.pool.fetchrow(
            f"""UPDATE {table} SET leased_by = $2, lease_expires_at = now() + make_interval(secs => $3),
                       updated_at = now()
                WHERE run_id = $1 AND {number} = (
                    SELECT {number} FROM {table}
                    WHERE run_id = $1 AND NOT done AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                          AND ({self.only})
                    ORDER BY {number} LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING *""",  # noqa: S608 - table and column names are the constants above
            self.run_id,
            self.holder,
            self.lease_seconds,
        )

    async def renew(self, number: int, executor: Executor | None = None) -> None:
        table, column = self.queue.table, self.queue.number
        status = await (executor or self.pool).execute(
            f"""UPDATE {table} SET lease_expires_at = now() + make_interval(secs => $4)
                WHERE run_id = $1 AND {column} = $2 AND leased_by = $3 AND NOT done""",  # noqa: S608
            self.run_id,
            number,
            self.holder,
            self.lease_seconds,
        )
        if status != "UPDATE 1":
            raise LeaseLost(f"unit {number} of run {self.run_id} is no longer leased to {self.holder}")

    async def outstanding(self) -> Outstanding:
        row = await self.pool.fetchrow(
            f"""SELECT count(*) AS units,
                       count(*) FILTER (WHERE lease_expires_at > now()) AS leased,
                       coalesce(array_agg(DISTINCT leased_by) FILTER (WHERE lease_expires_at > now()), '{{}}')
                           AS holders
                FROM {self.queue.table} WHERE run_id = $1 AND NOT done AND ({self.only})""",  # noqa: S608
            self.run_id,
        )
        assert row is not None
        return Outstanding(row["units"], row["leased"], tuple(row["holders"]))

    async def next(self) -> asyncpg.Record | None:
        """The next unit to work on, waiting while other processes hold the last ones (one of them may die, and
        its units come free when its lease expires); None once every unit is done."""
        while True:
            claimed = await self.claim()
            if claimed is not None:
                return claimed
            if (await self.outstanding()).units == 0:
                return None
            await asyncio.sleep(min(IDLE_POLL_SECONDS, self.lease_seconds / RENEWALS_PER_LEASE))

    async def hold_while(self, number: int, work: Coroutine[Any, Any, None]) -> bool:
        """Runs `work` on a claimed unit, renewing its lease meanwhile. False when the lease was lost on the way
        (the work is cancelled, or raised LeaseLost at a fenced checkpoint): another process has the unit now."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.lease_seconds / RENEWALS_PER_LEASE)
                if done:
                    task.result()
                    return True
                await self.renew(number)
        except LeaseLost:
            return False
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                    await task
