"""Guarded promotion: a table walks its stages one at a time, each held and watched, advancing only on evidence.

Every stage is held for an observation window while the guards (toolkit.guards) are read again and again; one
breach stops the promotion where it is, and the table moves on only once the window has passed with every guard
holding and every guard its next stage needs showing a value. The backfill runs in dual_write when DynamoDB lacks
the rows written before it, and a full verification right before each move that lets DynamoDB serve or stops
PostgreSQL receiving writes; the control plane's own guards still decide every switch. Each decision is recorded
with the figures it was made on (migration.promotion_decisions); a promotion that was interrupted is resumed by the
next `loanbook migrate promote` of its table. One promoter per table at a time (a session advisory lock).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import asyncpg

from chassis.errors import FailedPrecondition
from migration.control import ControlPlane, dynamo_receives_writes_since
from migration.stages import ORDER, POLICIES, Backend, Stage
from migration.table_spec import TableSpec
from migration.verifications import chain_head
from migration.watchdog import WatchdogSettings, last_automatic_rollback
from toolkit.backfill import BackfillOptions, Progress, run_backfill
from toolkit.guards import Evidence, GuardLimits, GuardReading, breached, gather_evidence, read_guards, unknown_required
from toolkit.settle import wait_for_replicas
from toolkit.verify import VerifyOptions, run_verify

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_dynamodb import DynamoDBClient

# Session advisory locks of promoters: (class, table) so they never meet the backfill's or verify's keys.
LOCK_CLASS = 0x70726F6D  # "prom"


WATCHDOG_COOL_DOWN = WatchdogSettings().cool_down_seconds


@dataclass(frozen=True)
class PromotionOptions:
    target: Stage
    window_seconds: float = 300.0  # each stage is held this long with every guard holding
    poll_seconds: float = 5.0  # the guards are read this often while a stage is held
    # After the window, how long to wait for a guard the next stage needs to show a value (e.g. shadow comparisons
    # on a quiet table) before giving up.
    evidence_timeout_seconds: float = 1800.0
    limits: GuardLimits = field(default_factory=GuardLimits)
    drain_seconds: float = 30.0  # a move to dynamo_only waits this long for the journal to drain
    settle_seconds: float = 5.0  # every replica follows a switch within this; the backfill waits that long
    # After the watchdog moved the table back, no move to a DynamoDB-served stage for this long: within its own
    # cool-down the watchdog could not move it back again.
    cool_down_seconds: float = WATCHDOG_COOL_DOWN
    who: str = "loanbook migrate promote"
    backfill: BackfillOptions = field(default_factory=BackfillOptions)
    verify: VerifyOptions = field(default_factory=VerifyOptions)


class PromotionView(Protocol):
    """Where a promotion shows what it watches and decides (the CLI's live view; tests collect it)."""

    def watching(self, table: str, stage: Stage, held: float, window: float, readings: Sequence[GuardReading]) -> None:
        """The guards' latest readings while `stage` is held (`held` seconds of `window`)."""

    def decided(self, table: str, stage: Stage, decision: str, detail: str) -> None:
        """A decision, as recorded in the audit trail."""


@dataclass(frozen=True)
class PromotionResult:
    table: str
    promotion_id: int
    status: str  # finished | stopped
    stage: Stage  # where the table is now
    detail: str
    resumed: bool


class PromotionRunning(FailedPrecondition):
    """Another process is promoting the table."""


class PlanHold:
    """Tables promoted in one plan: the first to stop holds the others where they are, saying why."""

    def __init__(self) -> None:
        self._stopped: dict[str, str] = {}

    def stop(self, table: str, detail: str) -> None:
        self._stopped.setdefault(table, detail)

    def held_by(self, table: str) -> str | None:
        """Why `table` may not advance: another table of the plan stopped (None: it may)."""
        others = [f"{other}: {detail}" for other, detail in self._stopped.items() if other != table]
        return "; ".join(others) or None


class _Stopped(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _lock_key(table: str) -> int:
    return zlib.crc32(table.encode()) & 0x7FFFFFFF


async def promoter_active(pool: asyncpg.Pool, table: str) -> bool:
    """Whether a process holds the table's promoter lock (a `running` promotion without one was interrupted)."""
    active = await pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                          AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2)""",
        LOCK_CLASS,
        _lock_key(table),
    )
    return bool(active)


@asynccontextmanager
async def _promoter_lock(pool: asyncpg.Pool, table: str) -> AsyncIterator[None]:
    """Holds the table's promoter lock on a connection of its own for the whole promotion (released with it)."""
    key = _lock_key(table)
    async with pool.acquire() as connection:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, key):
            running = await connection.fetchrow(
                "SELECT id, started_by, started_at FROM migration.promotions WHERE table_name = $1 "
                "AND status = 'running'",
                table,
            )
            where = (
                ""
                if running is None
                else f" (promotion {running['id']}, started by {running['started_by']} at "
                f"{running['started_at']:%Y-%m-%d %H:%M:%S %Z})"
            )
            raise PromotionRunning(f"{table}: another process is promoting it{where}; wait for it or stop it first")
        try:
            yield
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, key)


class _Audit:
    """The promotion's row and its decisions in migration.promotions / promotion_decisions."""

    def __init__(self, pool: asyncpg.Pool, table: str, view: PromotionView) -> None:
        self._pool, self._table, self._view = pool, table, view
        self.promotion_id = 0
        self.resumed = False

    async def start_or_resume(self, options: PromotionOptions, stage: Stage) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            running = await connection.fetchrow(
                "SELECT id, target_stage FROM migration.promotions WHERE table_name = $1 AND status = 'running' "
                "FOR UPDATE",
                self._table,
            )
            if running is not None:
                self.promotion_id, self.resumed = running["id"], True
                await connection.execute(
                    "UPDATE migration.promotions SET target_stage = $2, window_seconds = $3 WHERE id = $1",
                    self.promotion_id,
                    options.target.value,
                    options.window_seconds,
                )
            else:
                self.promotion_id = await connection.fetchval(
                    """INSERT INTO migration.promotions (table_name, target_stage, window_seconds, status, started_by)
                       VALUES ($1, $2, $3, 'running', $4) RETURNING id""",
                    self._table,
                    options.target.value,
                    options.window_seconds,
                    options.who,
                )
        verb = "resume" if self.resumed else "start"
        await self.decide(
            stage,
            verb,
            f"{verb} promotion {self.promotion_id} to {options.target.value} "
            f"(window {options.window_seconds:g} s, poll {options.poll_seconds:g} s)",
            {"limits": asdict(options.limits)},
        )

    async def decide(self, stage: Stage, decision: str, detail: str, figures: Mapping[str, object]) -> None:
        await self._pool.execute(
            """INSERT INTO migration.promotion_decisions (promotion_id, table_name, stage, decision, detail, figures)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
            self.promotion_id,
            self._table,
            stage.value,
            decision,
            detail,
            json.dumps(figures, default=str),
        )
        self._view.decided(self._table, stage, decision, detail)

    async def end(self, status: str, outcome: str) -> None:
        await self._pool.execute(
            "UPDATE migration.promotions SET status = $2, outcome = $3, finished_at = now() WHERE id = $1",
            self.promotion_id,
            status,
            outcome,
        )


def _figures(evidence: Evidence, readings: Sequence[GuardReading]) -> dict[str, object]:
    return {"guards": [r.figures() for r in readings], "window_seconds": evidence.window_seconds}


def _summary(readings: Sequence[GuardReading]) -> str:
    return "; ".join(f"{r.guard} {'-' if r.value is None else f'{r.value:.4g}'} (limit {r.limit:g})" for r in readings)


class Promoter:
    """Promotes one table (see the module's docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dynamodb: DynamoDBClient,
        spec: TableSpec,
        table_names: Callable[[str], str],
        prometheus_url: str,
        options: PromotionOptions,
        view: PromotionView,
        progress: Progress | None = None,
        plan: PlanHold | None = None,
    ) -> None:
        self._pool, self._dynamodb, self._spec = pool, dynamodb, spec
        self._table_names, self._prometheus_url = table_names, prometheus_url
        self._options, self._view, self._progress = options, view, progress
        self._table = spec.name
        self._control = ControlPlane(pool)
        self._audit = _Audit(pool, self._table, view)
        self._plan = plan or PlanHold()

    async def run(self) -> PromotionResult:
        async with _promoter_lock(self._pool, self._table):
            await self._control.ensure_defaults(who=self._options.who, tables=[self._table])
            stage = (await self._control.mode(self._table)).stage
            await self._audit.start_or_resume(self._options, stage)
            try:
                detail = await self._walk()
            except _Stopped as stopped:
                self._plan.stop(self._table, stopped.detail)
                stage = (await self._control.mode(self._table)).stage
                await self._audit.decide(stage, "stop", stopped.detail, {})
                await self._audit.end("stopped", stopped.detail)
                return self._result("stopped", stage, stopped.detail)
            stage = (await self._control.mode(self._table)).stage
            await self._audit.end("finished", detail)
            return self._result("finished", stage, detail)

    def _result(self, status: str, stage: Stage, detail: str) -> PromotionResult:
        return PromotionResult(self._table, self._audit.promotion_id, status, stage, detail, self._audit.resumed)

    async def _walk(self) -> str:
        target = self._options.target
        while True:
            mode = await self._control.mode(self._table)
            if ORDER.index(mode.stage) >= ORDER.index(target):
                detail = f"{self._table} is in {mode.stage.value}"
                await self._audit.decide(mode.stage, "finish", detail, {})
                return detail
            following = ORDER[ORDER.index(mode.stage) + 1]
            await self._check_cool_down(mode.stage, following)
            if mode.stage is Stage.DUAL_WRITE and await self._backfill_needed():
                await self._backfill()
            evidence, readings = await self._hold(mode.stage, following)
            if following in (Stage.DYNAMO_LIVE, Stage.DYNAMO_ONLY):
                await self._verify(mode.stage, following)
            self._check_plan(mode.stage)
            reason = (
                f"promotion {self._audit.promotion_id}: guards held for {self._options.window_seconds:g} s in "
                f"{mode.stage.value}: {_summary(readings)}"
            )
            try:
                await self._control.change(
                    self._table,
                    stage=following,
                    who=f"promote:{self._options.who}",
                    reason=reason[:2000],
                    drain_seconds=self._options.drain_seconds,
                )
            except FailedPrecondition as refused:
                raise _Stopped(f"the control plane refused {following.value}: {refused}") from None
            await self._audit.decide(
                mode.stage, "advance", f"{mode.stage.value} -> {following.value}", _figures(evidence, readings)
            )

    async def _check_cool_down(self, stage: Stage, following: Stage) -> None:
        if POLICIES[following].serves is not Backend.DYNAMODB:
            return
        last = await last_automatic_rollback(self._pool, self._table)
        cool_down = self._options.cool_down_seconds
        if last is not None and float(last["age"]) < cool_down:
            raise _Stopped(
                f"{self._table} stays in {stage.value}: the watchdog moved it back {float(last['age']):.0f} s ago "
                f"({last['changed_by']}), and for {cool_down:g} s after that it could not do so again; promote "
                f"again in {cool_down - float(last['age']):.0f} s, once the cause is understood"
            )

    def _check_plan(self, stage: Stage) -> None:
        if (held := self._plan.held_by(self._table)) is not None:
            raise _Stopped(f"{self._table} held in {stage.value}: the plan stopped ({held})")

    async def _hold(self, stage: Stage, following: Stage) -> tuple[Evidence, list[GuardReading]]:
        """Watches the guards in `stage` for the window; returns the last evidence once the table may move on."""
        options = self._options
        started = time.monotonic()
        since: datetime = await self._pool.fetchval("SELECT now()")
        while True:
            held = time.monotonic() - started
            # Evidence from the hold alone: the trailing range grows with it up to the window, so nothing from
            # before the hold (another stage, or items since changed) counts for or against this one.
            since_hold = min(options.window_seconds, max(held, options.poll_seconds, 2.0))
            evidence = await gather_evidence(self._pool, self._prometheus_url, self._table, since_hold, since)
            readings = read_guards(evidence, options.limits)
            self._check_plan(stage)
            self._view.watching(self._table, stage, held, options.window_seconds, readings)
            if failed := breached(readings, stage):
                guards = ", ".join(
                    f"{r.guard} {r.value:.4g} > {r.limit:g} ({r.evidence})" for r in failed if r.value is not None
                )
                await self._audit.decide(stage, "breach", guards, _figures(evidence, readings))
                raise _Stopped(f"{self._table} stays in {stage.value}: {guards}")
            if held >= options.window_seconds:
                missing = unknown_required(readings, stage)
                if not missing:
                    return evidence, readings
                if held >= options.window_seconds + options.evidence_timeout_seconds:
                    wanted = "; ".join(f"{r.guard}: {r.evidence}" for r in missing)
                    raise _Stopped(
                        f"{self._table} stays in {stage.value}: not enough evidence to move to {following.value} "
                        f"after {held:.0f} s ({wanted})"
                    )
            await asyncio.sleep(options.poll_seconds)

    async def _backfill_needed(self) -> bool:
        """Whether DynamoDB may lack rows written before it received writes: no backfill finished that started since
        the table left postgres_only, or one is unfinished."""
        unfinished = await self._pool.fetchval(
            "SELECT count(*) FROM migration.backfill_runs WHERE table_name = $1 AND status = 'running'", self._table
        )
        since = await dynamo_receives_writes_since(self._pool, self._table)
        finished = await self._pool.fetchval(
            """SELECT max(started_at) FROM migration.backfill_runs WHERE table_name = $1 AND status = 'finished'""",
            self._table,
        )
        return bool(unfinished) or finished is None or (since is not None and finished < since["changed_at"])

    async def _backfill(self) -> None:
        await wait_for_replicas(self._pool, self._table, self._options.settle_seconds)
        [summary] = await run_backfill(
            self._pool, self._dynamodb, [self._spec], self._table_names, self._options.backfill, self._progress
        )
        await self._audit.decide(
            Stage.DUAL_WRITE,
            "backfill",
            f"backfill run {summary.run_id} copied {summary.rows:,} rows",
            {"run_id": summary.run_id, "rows": summary.rows, "seconds": summary.seconds},
        )

    async def _verify(self, stage: Stage, following: Stage) -> None:
        """An incremental verification where a chain of them can stand for a full one (seconds, whatever the table's
        size), else a full one; the control plane's guards judge it either way."""
        options, why_full = self._options.verify, ""
        try:
            await chain_head(self._pool, self._table)
            options = replace(options, incremental=True, sample=1.0)
        except FailedPrecondition as full_needed:
            why_full = f" (not incremental: {full_needed})"
        [summary] = await run_verify(
            self._pool, self._dynamodb, [self._spec], self._table_names, options, self._progress
        )
        figures = {
            "verification_id": summary.verification_id,
            "incremental": summary.incremental,
            "keys_checked": summary.keys_checked,
            "rows_checked": summary.rows_checked,
            "missing": summary.missing,
            "extra": summary.extra,
            "differing": summary.differing,
            "seconds": round(summary.seconds, 3),
        }
        scope = f"incremental, {summary.keys_checked:,} written keys" if summary.incremental else "full"
        detail = (
            f"verification {summary.verification_id} ({scope}) before {following.value}: "
            f"{summary.rows_checked:,} rows, {summary.difference_count} differences{why_full}"
        )
        await self._audit.decide(stage, "verify", detail, figures)
        if not summary.clean:
            raise _Stopped(f"{self._table} stays in {stage.value}: {detail}")
