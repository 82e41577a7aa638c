"""The backfill engine: copies historical rows from PostgreSQL to DynamoDB in parallel, checkpointed, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import asyncpg

from chassis.errors import FailedPrecondition
from migration.stages import POLICIES, Stage
from migration.table_spec import Executor, Key, TableSpec
from toolkit.collector import bulk_allocation
from toolkit.dynamo_io import Consumed, Pacer, Pacing, batch_write
from toolkit.leases import BACKFILL_RANGES, Leases, holder_name
from toolkit.runs import BackfillRun, BackfillRuns, KeyRange, split_ranges
from toolkit.runs import key_range as range_of
from toolkit.telemetry import MeteredProgress, traced_job

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# Rows sampled per range when cutting the key space: enough for ranges within a few percent of each other.
SAMPLE_PER_RANGE = 200


class Progress(Protocol):
    """Where an engine reports progress (the CLI draws Rich bars; benchmarks and tests may pass nothing)."""

    def start(self, table: str, total: int, done: int) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...

    def advance_elsewhere(self, table: str, rows: int) -> None:
        """Rows other processes working on the same run got through (shown, not counted as this process's)."""


class NoProgress:
    def start(self, table: str, total: int, done: int) -> None:
        pass

    def advance(self, table: str, rows: int) -> None:
        pass

    def advance_elsewhere(self, table: str, rows: int) -> None:
        pass


@dataclass(frozen=True)
class BackfillOptions:
    workers: int = 4  # key ranges copied at once, per table
    batch_rows: int = 500  # rows per keyset page (and per checkpoint)
    write_concurrency: int = 4  # BatchWriteItem calls in flight per worker
    rate_limit: float | None = None  # items per second per table (provisioned capacity); None: as fast as it goes
    ranges_per_worker: int = 4  # more ranges than workers, so a slow range does not leave workers idle at the end
    restart: bool = False  # abandon an unfinished run instead of resuming it
    who: str = "loanbook migrate backfill"
    # Each range a process copies is leased for this long and renewed while it works: another process running
    # the same backfill takes over the ranges of one that died once their leases expire.
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class BackfillSummary:
    table: str
    run_id: int
    resumed: bool
    rows: int  # copied by this invocation
    items: int
    rows_total: int  # of the run (counted when it started)
    rows_done: int  # of the run, including earlier invocations
    ranges: int
    seconds: float
    # Capacity units this invocation's writes consumed, table and indexes (the run's record adds up every process's).
    read_units: float = 0.0
    write_units: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def rows_done_text(rows_done: int, rows_total: int) -> str:
    """A run's progress in rows. Its total is counted when it starts, and rows written during the run are copied
    too (they fall into its key ranges), so rows done can pass the total: then it is said as what it is."""
    if rows_done <= rows_total:
        return f"{rows_done:,} of {rows_total:,} rows done"
    return f"{rows_done:,} rows done ({rows_total:,} counted when the run started)"


def dual_writing(stage: Stage) -> bool:
    policy = POLICIES[stage]
    return policy.writes_postgres and policy.writes_dynamo


async def current_stage(executor: asyncpg.Pool, table: str) -> Stage:
    stage = await executor.fetchval("SELECT stage FROM migration.table_modes WHERE table_name = $1", table)
    return Stage(stage) if stage else Stage.POSTGRES_ONLY  # what the replicas assume of a table with no mode


async def require_dual_writing(pool: asyncpg.Pool, table: str) -> Stage:
    """A copy is only complete if every write after it also reaches DynamoDB: refuse other stages."""
    stage = await current_stage(pool, table)
    if not dual_writing(stage):
        stages = ", ".join(s.value for s in Stage if dual_writing(s))
        hint = (
            f"switch first: `loanbook migrate switch {table} dual_write`"
            if stage is Stage.POSTGRES_ONLY
            else "PostgreSQL no longer receives writes, so it has nothing DynamoDB lacks"
        )
        raise FailedPrecondition(
            f"{table}: backfill needs a stage that writes both stores ({stages}); it is in {stage.value}: {hint}"
        )
    return stage


def _lock_key(table: str) -> int:
    return int.from_bytes(hashlib.sha256(f"loanbook-backfill:{table}".encode()).digest()[:7], "big")


async def _plan_run(pool: asyncpg.Pool, spec: TableSpec, stage: Stage, options: BackfillOptions) -> BackfillRun:
    """The table's unfinished run, joined, or a new one. Processes starting at once serialise here on an advisory
    lock (only while planning), so they all join one run instead of each starting their own."""
    runs = BackfillRuns(pool)
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", _lock_key(spec.name))
        try:
            unfinished = await runs.unfinished(spec.name)
            if unfinished is not None and not options.restart:
                return unfinished
            if unfinished is not None:
                busy = await Leases(pool, BACKFILL_RANGES, unfinished.id, "", options.lease_seconds).outstanding()
                if busy.leased:
                    raise FailedPrecondition(
                        f"{spec.name}: cannot restart backfill run {unfinished.id}: other processes are copying "
                        f"{busy.leased} of its ranges ({', '.join(busy.holders)}); stop them first, or run without "
                        "--restart to join them"
                    )
                await runs.abandon(unfinished.id)
            total = await spec.count(pool)
            count = max(1, options.workers * options.ranges_per_worker)
            sampled = await spec.sample_keys(pool, min(1.0, SAMPLE_PER_RANGE * count / total)) if total else []
            return await runs.start(spec.name, stage.value, options.who, total, split_ranges(sampled, count))
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _lock_key(spec.name))


async def _copy_range(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    table_name: str,
    spec: TableSpec,
    leases: Leases,
    key_range: KeyRange,
    options: BackfillOptions,
    pacer: Pacer,
    copied: Callable[[int, int, Consumed], None],
) -> None:
    """Copies one key range page by page, two pages in flight: the next page is read (and, for a table whose rows
    change, share-locked) while the current one is written, and its BatchWriteItem calls queue behind the current
    page's for the worker's `write_concurrency` slots, so the slots do not idle at page boundaries. Each page's
    checkpoint commits after DynamoDB holds the page and after the page before it is checkpointed."""
    slots = asyncio.Semaphore(options.write_concurrency)
    upper = key_range.upper

    async def page(
        after: Key | None, read: asyncio.Future[tuple[Key | None, bool]], previous: asyncio.Task[None] | None
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            executor: Executor = pool
            if spec.lock_rows:
                # The rows stay share-locked by this transaction until DynamoDB holds them and the checkpoint
                # commits with it (see TableSpec.lock_rows): no live write can land a newer version in between.
                connection = await stack.enter_async_context(pool.acquire())
                await stack.enter_async_context(connection.transaction())
                executor = connection
            rows = await spec.read_page(executor, after, upper, options.batch_rows, lock=spec.lock_rows)
            last = spec.key_of(rows[-1]) if rows else None
            finished = len(rows) < options.batch_rows
            read.set_result((last, finished))
            items = [item for row in rows for item in spec.items(row)]
            consumed = Consumed()
            if items:
                await batch_write(dynamodb, table_name, items, pacer=pacer, slots=slots, consumed=consumed)
            if previous is not None:
                await previous  # checkpoints move forward in key order
            # Only once DynamoDB holds the page: a run killed before this copies the page again, harmlessly.
            await BackfillRuns.checkpoint(
                executor, leases, key_range.number, last, len(rows), len(items), done=finished, consumed=consumed
            )
        copied(len(rows), len(items), consumed)

    after = key_range.last or key_range.lower
    previous: asyncio.Task[None] | None = None
    # A failing page cancels the other one; its transaction rolls back, its locks go.
    async with asyncio.TaskGroup() as group:
        while True:
            read: asyncio.Future[tuple[Key | None, bool]] = asyncio.get_running_loop().create_future()
            current = group.create_task(page(after, read, previous))
            last, finished = await read
            if previous is not None:
                await previous  # at most two pages open: the one being written and the one just read
            previous = current
            if finished:
                return
            after = last


async def backfill_table(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    spec: TableSpec,
    table_name: str,
    options: BackfillOptions,
    progress: Progress,
) -> BackfillSummary:
    """Copies one table: joins its unfinished run (resumed, or started by other processes copying it right now)
    unless `options.restart`, and takes leased ranges from the run's queue until every range is done."""
    started = time.monotonic()
    stage = await require_dual_writing(pool, spec.name)
    run = await _plan_run(pool, spec, stage, options)
    runs = BackfillRuns(pool)
    leases = Leases(pool, BACKFILL_RANGES, run.id, holder_name(), options.lease_seconds)
    resumed = run.rows_done > 0 or any(r.done for r in run.ranges)
    progress.start(spec.name, run.rows_total, run.rows_done)
    # A plain rate, no backoff: a backfill normally runs before DynamoDB serves reads (dual_write, shadow).
    pacer = Pacer(Pacing(options.rate_limit, backoff=False))
    totals = [0, 0]
    consumed = Consumed()
    elsewhere = [0]  # rows other processes copied since this one joined, as shown on the progress bar

    def copied(rows: int, items: int, page_consumed: Consumed) -> None:
        totals[0] += rows
        totals[1] += items
        nonlocal consumed
        consumed += page_consumed
        progress.advance(spec.name, rows)

    async def follow_others() -> None:
        """The whole run's progress, whichever process copied it (never less than already shown)."""
        others = await runs.rows_done(run.id) - run.rows_done - totals[0]
        if others > elsewhere[0]:
            progress.advance_elsewhere(spec.name, others - elsewhere[0])
            elsewhere[0] = others

    async def worker() -> None:
        while (claimed := await leases.next()) is not None:
            await follow_others()
            key_range = range_of(claimed)
            copy = _copy_range(pool, dynamodb, table_name, spec, leases, key_range, options, pacer, copied)
            if not await leases.hold_while(key_range.number, copy):
                logger.warning(
                    "backfill range taken over by another process",
                    extra={"table": spec.name, "run": run.id, "range": key_range.number},
                )

    # A failing worker cancels the others; the checkpoints keep what they finished, and their leases expire.
    async with asyncio.TaskGroup() as group:
        for _ in range(options.workers):
            group.create_task(worker())
    await follow_others()
    await runs.finish(run.id)
    seconds = time.monotonic() - started
    summary = BackfillSummary(
        spec.name,
        run.id,
        resumed,
        totals[0],
        totals[1],
        run.rows_total,
        await runs.rows_done(run.id),
        len(run.ranges),
        seconds,
        read_units=consumed.read,
        write_units=consumed.write,
    )
    logger.info(
        "backfill finished", extra={"table": spec.name, "run": run.id, "rows": totals[0], "seconds": round(seconds, 3)}
    )
    return summary


async def run_backfill(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    specs: Sequence[TableSpec],
    table_names: Callable[[str], str],
    options: BackfillOptions | None = None,
    progress: Progress | None = None,
) -> list[BackfillSummary]:
    """Backfills the tables side by side; every table must be dual-writing, or nothing starts.

    `table_names` maps a migrated table ("payments") to its DynamoDB table name. The pool needs about
    `2 * workers + 1` connections per table (a worker holds two pages' transactions when rows are locked).
    """
    options = options or BackfillOptions()
    for spec in specs:
        await require_dual_writing(pool, spec.name)
    sink = MeteredProgress("backfill", progress or NoProgress(), outcome="copied")

    async def backfill_traced(spec: TableSpec) -> BackfillSummary:
        with traced_job("backfill", spec.name):
            return await backfill_table(pool, dynamodb, spec, table_names(spec.name), options, sink)

    with bulk_allocation():
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(backfill_traced(spec)) for spec in specs]
    return [task.result() for task in tasks]
