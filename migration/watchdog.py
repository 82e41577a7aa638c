"""The watchdog: while DynamoDB serves a table's reads, it moves the table back to shadow when they go bad for long.

Every replica of a migrated table watches its own reads (DynamoDB-served reads that fell back to PostgreSQL or
failed, shadow mismatches); one replica per table acts, the one holding the table's PostgreSQL advisory lock, so two
replicas that see the same breach make one decision. A breach must last `sustain_seconds` before anything happens
(a check with too few reads to judge neither starts nor ends one), a value at its limit is no breach, and after an
automatic rollback the table's watchdog waits `cool_down_seconds` before the next: no flapping. It moves the table
only from dynamo_live or dynamo_primary to shadow, through the control plane and its guards, recorded as
`auto:<guard>` with the figures; from dynamo_only PostgreSQL lacks writes, so the way back stays an operator's
(`loanbook migrate rollback`, which reverse-syncs). `loanbook migrate watchdog TABLE off` turns it off per table.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from chassis.errors import FailedPrecondition
from migration.control import ControlPlane
from migration.hybrid import HybridTable
from migration.stages import Stage

logger = logging.getLogger(__name__)

# The stages it watches, and where it sends a table: the last stage in which PostgreSQL serves reads.
WATCHED = frozenset({Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY})
ROLLBACK_TO = Stage.SHADOW
# Session advisory locks of watchdogs: (class, table), apart from the promoter's and the runs' keys.
LOCK_CLASS = 0x77617463  # "watc"
AUTO = "auto:"


@dataclass(frozen=True)
class WatchdogSettings:
    check_seconds: float = 5.0
    # A breach lasting this long moves the table: long enough that a blip (a timeout or two, one slow GC) does not.
    sustain_seconds: float = 60.0
    # After an automatic rollback, the next waits this long (the table's, whichever replica decides).
    cool_down_seconds: float = 900.0
    # DynamoDB-served reads answered by PostgreSQL instead: a few on transient timeouts are normal, 5 % is not.
    max_fallback_ratio: float = 0.05
    # DynamoDB-served reads nothing could answer (fallback off or impossible).
    max_failed_ratio: float = 0.01
    # Shadow comparisons (dynamo_live) that mismatched: any is a difference callers are being served.
    max_mismatch_ratio: float = 0.0
    # Reads (comparisons) a check needs before its ratio counts.
    min_reads: int = 20
    min_comparisons: int = 5


@dataclass(frozen=True)
class Tally:
    """A replica's counters at one moment (they only grow)."""

    reads: int = 0
    fell_back: int = 0
    failed: int = 0
    compared: int = 0
    mismatched: int = 0


@dataclass(frozen=True)
class Reading:
    guard: str
    value: float
    limit: float
    evidence: str

    @property
    def breached(self) -> bool:
        return self.value > self.limit


def tally_of(hybrid: HybridTable) -> Tally:
    reads, shadow = hybrid.dynamo_reads, hybrid.shadow
    return Tally(reads.served, reads.fell_back, reads.failed, shadow.compared, shadow.mismatched)


def judge(before: Tally, now: Tally, settings: WatchdogSettings) -> list[Reading]:
    """The guards with enough evidence between two tallies (an empty list: nothing to judge)."""
    reads, compared = now.reads - before.reads, now.compared - before.compared
    readings = []
    if reads >= settings.min_reads:
        fell_back, failed = now.fell_back - before.fell_back, now.failed - before.failed
        readings.append(
            Reading("fallback_ratio", fell_back / reads, settings.max_fallback_ratio, f"{fell_back}/{reads} reads")
        )
        readings.append(Reading("failed_ratio", failed / reads, settings.max_failed_ratio, f"{failed}/{reads} reads"))
    mismatched = now.mismatched - before.mismatched
    if compared >= settings.min_comparisons or mismatched:
        readings.append(
            Reading(
                "shadow_mismatch_ratio",
                mismatched / max(compared, mismatched),
                settings.max_mismatch_ratio,
                f"{mismatched}/{compared} comparisons",
            )
        )
    return readings


class BreachClock:
    """How long the guards have been breached without a break: a check that holds ends a breach, one without
    evidence leaves it as it was."""

    def __init__(self, sustain_seconds: float) -> None:
        self._sustain = sustain_seconds
        self._since: float | None = None

    def observe(self, readings: Sequence[Reading], now: float) -> bool:
        """Whether the breach, if any, has now lasted long enough."""
        if not readings:
            return self._since is not None and now - self._since >= self._sustain
        if not any(r.breached for r in readings):
            self._since = None
            return False
        if self._since is None:
            self._since = now
        return now - self._since >= self._sustain

    def reset(self) -> None:
        self._since = None


async def last_automatic_rollback(executor: asyncpg.Pool | asyncpg.Connection, table: str) -> asyncpg.Record | None:
    return await executor.fetchrow(
        """SELECT changed_at, changed_by, reason, extract(epoch FROM now() - changed_at) AS age
           FROM migration.mode_changes WHERE table_name = $1 AND changed_by LIKE 'auto:%'
           ORDER BY id DESC LIMIT 1""",
        table,
    )


class Watchdog:
    """One replica's watchdog of one table (see the module's docstring); `run` until cancelled."""

    def __init__(
        self,
        hybrid: HybridTable,
        control: ControlPlane,
        pool: asyncpg.Pool,
        dsn: str,
        settings: WatchdogSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hybrid, self._control, self._pool, self._dsn = hybrid, control, pool, dsn
        self._settings, self._clock = settings, clock
        self._breach = BreachClock(settings.sustain_seconds)
        self._lock: asyncpg.Connection | None = None
        self.decisions = 0  # automatic rollbacks this replica made

    @property
    def table(self) -> str:
        return self._hybrid.name

    async def run(self) -> None:
        before = tally_of(self._hybrid)
        try:
            while True:
                await asyncio.sleep(self._settings.check_seconds)
                now = tally_of(self._hybrid)
                try:
                    await self.check(before, now)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    logger.warning("watchdog check failed", extra={"table": self.table, "error": type(error).__name__})
                    await self._release()
                before = now
        finally:
            await self._release()

    async def check(self, before: Tally, now: Tally) -> bool:
        """Judges the reads between two tallies; moves the table back when a breach has lasted. True if it did."""
        if self._hybrid.mode.stage not in WATCHED:
            self._breach.reset()
            return False
        readings = judge(before, now, self._settings)
        if not self._breach.observe(readings, self._clock()):
            return False
        breached = [r for r in readings if r.breached]
        if not breached or not await self._elected():
            return False
        if not await self._control.watchdog_enabled(self.table):
            logger.warning("watchdog off: not rolling back", extra={"table": self.table, "guard": breached[0].guard})
            return False
        last = await last_automatic_rollback(self._pool, self.table)
        if last is not None and float(last["age"]) < self._settings.cool_down_seconds:
            return False
        figures = "; ".join(f"{r.guard} {r.value:.4g} > {r.limit:g} ({r.evidence})" for r in breached)
        try:
            mode = await self._control.change(
                self.table,
                stage=ROLLBACK_TO,
                who=f"{AUTO}{breached[0].guard}",
                reason=f"watchdog: breached for {self._settings.sustain_seconds:g} s: {figures}"[:2000],
            )
        except FailedPrecondition as refused:
            logger.warning("watchdog rollback refused", extra={"table": self.table, "reason": str(refused)[:300]})
            return False
        self._breach.reset()
        self.decisions += 1
        logger.warning(
            "watchdog moved the table back", extra={"table": self.table, "to": mode.stage.value, "figures": figures}
        )
        return True

    async def _elected(self) -> bool:
        """Whether this replica holds the table's watchdog lock (taking it if free); kept until the process ends."""
        if self._lock is not None and not self._lock.is_closed():
            return True
        key = zlib.crc32(self.table.encode()) & 0x7FFFFFFF
        connection = await asyncpg.connect(self._dsn)
        if await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, key):
            self._lock = connection
            return True
        await connection.close()
        return False

    async def _release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            if not lock.is_closed():
                await lock.close()
