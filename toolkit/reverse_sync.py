"""The way back from dynamo_only: DynamoDB's items copied back into PostgreSQL, never replacing a newer version.

In dynamo_only PostgreSQL receives no writes, so every earlier stage would serve or keep data without them. The way
back (`loanbook migrate rollback <table>` from dynamo_only):

1. switch to dynamo_primary with fallback off: PostgreSQL receives every write again (dual-write), DynamoDB still
   serves every read, and PostgreSQL answers none (the control plane's guard keeps it so until step 3 passes);
2. after a settle time (every replica follows the switch), a reverse sync: a parallel segmented Scan of DynamoDB
   (strongly consistent) upserts each item into PostgreSQL. Payments: insert, or update only where PostgreSQL holds
   an older version (`ON CONFLICT (id) DO UPDATE ... WHERE version < EXCLUDED.version`), so a write that reached
   PostgreSQL since the switch is never replaced. Log entries never change: inserted where absent;
3. a full verification, which must come out clean; then fallback is restored and the usual rollback steps (shadow,
   dual_write, postgres_only) are allowed.

A live write in dynamo_primary that updates a payment PostgreSQL does not hold yet (written in dynamo_only and not
synced yet) first takes DynamoDB's version into PostgreSQL (services.payment.store), so it succeeds meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from chassis.errors import FailedPrecondition
from migration.control import ControlPlane, reverse_sync_pending
from migration.stages import POLICIES, Stage
from migration.table_spec import RestoredPage, TableSpec
from toolkit.backfill import NoProgress, Progress, current_stage
from toolkit.dynamo_io import RETURN_TOTAL, UNPACED, Consumed, Pacer, PaceReport, Pacing, item_count, record, scanned
from toolkit.plan import rollback_target
from toolkit.settle import wait_for_replicas
from toolkit.telemetry import MeteredProgress, traced_job
from toolkit.verify import VerifyOptions, VerifySummary, run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

logger = logging.getLogger(__name__)

# Reported conflicting keys per table; the count goes on whatever their number.
REPORTED = 100


@dataclass(frozen=True)
class ReverseSyncOptions:
    segments: int = 8  # parallel Scan segments per table
    page_items: int = 500  # Scan Limit: items per page, each page one PostgreSQL statement
    # Every replica must follow the switch out of dynamo_only before the scan starts, or a write it still made to
    # DynamoDB alone could be missed (the verification after the sync would report it as an extra item).
    settle_seconds: float = 5.0
    who: str = "loanbook migrate reverse-sync"
    # Scans paced per table (rate limit, backing off when DynamoDB slows down): on the way back DynamoDB serves
    # every read with no fallback, so the scan must not starve the services. The CLI sets a rate by default.
    pacing: Pacing = UNPACED


@dataclass
class ReverseSyncSummary:
    table: str
    run_id: int = 0
    covers_change: int | None = None  # the switch out of dynamo_only this sync covers
    items_scanned: int = 0
    inserted: int = 0  # rows PostgreSQL did not have
    updated: int = 0  # rows PostgreSQL had at an older version
    kept: int = 0  # rows PostgreSQL had at the same or a newer version: left alone
    skipped: int = 0  # items that stand for no row (idempotency markers, log entries past their retention)
    conflicts: int = 0
    conflict_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pacing: PaceReport | None = None
    read_units: float = 0.0  # capacity units its Scans consumed (recorded with the run)

    @property
    def clean(self) -> bool:
        return self.conflicts == 0

    @property
    def items_per_second(self) -> float:
        return self.items_scanned / self.seconds if self.seconds > 0 else 0.0


# --- writing one scanned page into PostgreSQL ----------------------------------------------------------------


# --- one table -----------------------------------------------------------------------------------------------


async def _left_dynamo_only(pool: asyncpg.Pool, table: str) -> int | None:
    change: int | None = await pool.fetchval(
        """SELECT id FROM migration.mode_changes
           WHERE table_name = $1 AND from_stage = 'dynamo_only' AND to_stage <> 'dynamo_only'
           ORDER BY id DESC LIMIT 1""",
        table,
    )
    return change


async def _require_postgres_writes(pool: asyncpg.Pool, table: str) -> Stage:
    stage = await current_stage(pool, table)
    if not POLICIES[stage].writes_postgres:
        raise FailedPrecondition(
            f"{table}: in {stage.value} PostgreSQL receives no writes, so a copy into it would be stale at once; "
            f"`loanbook migrate rollback {table}` switches to dynamo_primary first and then runs the reverse sync"
        )
    return stage


async def _sync_table(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    spec: TableSpec,
    table_name: str,
    options: ReverseSyncOptions,
    progress: Progress,
) -> ReverseSyncSummary:
    summary = ReverseSyncSummary(spec.name)
    stage = await _require_postgres_writes(pool, spec.name)
    await wait_for_replicas(pool, spec.name, options.settle_seconds)
    summary.covers_change = await _left_dynamo_only(pool, spec.name)
    started = time.monotonic()
    summary.run_id = await pool.fetchval(
        """INSERT INTO migration.reverse_syncs (table_name, stage, started_by, covers_change)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        spec.name,
        stage.value,
        options.who,
        summary.covers_change,
    )
    progress.start(spec.name, await item_count(dynamodb, table_name), 0)
    pacer = Pacer(options.pacing)
    consumed = Consumed()

    async def scan_segment(segment: int) -> None:
        request: dict[str, Any] = {
            "TableName": table_name,
            "Segment": segment,
            "TotalSegments": options.segments,
            "ConsistentRead": True,
            "Limit": options.page_items,
            "ReturnConsumedCapacity": RETURN_TOTAL,
        }
        while True:
            response = await pacer.call(options.page_items, functools.partial(dynamodb.scan, **request), scanned)
            record("Scan", response, consumed)
            items = response.get("Items", [])
            if items:
                result: RestoredPage = await spec.restore(pool, items, summary.run_id)
                summary.items_scanned += len(items)
                summary.inserted += result.inserted
                summary.updated += result.updated
                summary.kept += result.kept
                summary.skipped += result.skipped
                summary.conflicts += len(result.conflict_keys)
                room = REPORTED - len(summary.conflict_keys)
                summary.conflict_keys += list(result.conflict_keys[: max(0, room)])
                progress.advance(spec.name, len(items))
            start = response.get("LastEvaluatedKey")
            if not start:
                return
            request["ExclusiveStartKey"] = start

    try:
        async with asyncio.TaskGroup() as group:
            for segment in range(options.segments):
                group.create_task(scan_segment(segment))
    except BaseException:
        await pool.execute(
            """UPDATE migration.reverse_syncs SET status = 'failed', finished_at = now(), consumed_read_units = $2,
                   consumed_write_units = $3
               WHERE id = $1""",
            summary.run_id,
            consumed.read,
            consumed.write,
        )
        raise
    summary.seconds = time.monotonic() - started
    summary.pacing = pacer.report()
    summary.read_units = consumed.read
    await pool.execute(
        """UPDATE migration.reverse_syncs SET status = 'finished', finished_at = now(), items_scanned = $2,
               rows_inserted = $3, rows_updated = $4, rows_kept = $5, conflicts = $6, consumed_read_units = $7,
               consumed_write_units = $8
           WHERE id = $1""",
        summary.run_id,
        summary.items_scanned,
        summary.inserted,
        summary.updated,
        summary.kept,
        summary.conflicts,
        consumed.read,
        consumed.write,  # none: a reverse sync only reads DynamoDB
    )
    return summary


async def run_reverse_sync(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    specs: Sequence[TableSpec],
    table_names: Callable[[str], str],
    options: ReverseSyncOptions | None = None,
    progress: Progress | None = None,
) -> list[ReverseSyncSummary]:
    """Copies each table's DynamoDB items into PostgreSQL (tables side by side), never replacing a newer version,
    and records each run in migration.reverse_syncs. Refused unless PostgreSQL receives every write."""
    options = options or ReverseSyncOptions()
    sink = MeteredProgress("reverse_sync", progress or NoProgress(), outcome="copied")
    for spec in specs:  # refusals first, as themselves (not inside a TaskGroup's exception group)
        await _require_postgres_writes(pool, spec.name)

    async def sync_traced(spec: TableSpec) -> ReverseSyncSummary:
        with traced_job("reverse_sync", spec.name):
            return await _sync_table(pool, dynamodb, spec, table_names(spec.name), options, sink)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(sync_traced(spec)) for spec in specs]
    return [task.result() for task in tasks]


# --- the whole way back --------------------------------------------------------------------------------------


@dataclass
class WayBack:
    """What `rollback` out of dynamo_only did for one table."""

    table: str
    from_stage: Stage
    stage: Stage  # where the table is now
    fallback: bool
    sync: ReverseSyncSummary | None = None
    verification: VerifySummary | None = None

    @property
    def complete(self) -> bool:
        """PostgreSQL holds every write again: the sync and its verification came out clean."""
        return (self.sync is None or self.sync.clean) and (self.verification is None or self.verification.clean)


async def rollback_out_of_dynamo_only(
    pool: asyncpg.Pool,
    dynamodb: DynamoDBClient,
    specs: Sequence[TableSpec],
    table_names: Callable[[str], str],
    *,
    to: Stage | None = None,
    who: str,
    reason: str = "rollback out of dynamo_only",
    options: ReverseSyncOptions | None = None,
    verify_options: VerifyOptions | None = None,
    progress: Progress | None = None,
) -> list[WayBack]:
    """For tables in dynamo_only, or on the way back from it (a pending reverse sync): switch to dynamo_primary with
    fallback off, reverse-sync, verify in full; when both are clean, restore the fallback the table had in
    dynamo_only and go on to `to` (an earlier stage) if given. Resumable: run again after an interruption."""
    options = options or ReverseSyncOptions(who=who)
    control = ControlPlane(pool)
    restore: dict[str, bool] = {}
    ways: dict[str, WayBack] = {}
    for spec in specs:
        mode = await control.mode(spec.name)
        if mode.stage is Stage.DYNAMO_ONLY:
            rollback_target(mode, to)  # refuses a `to` that is not earlier
            restore[spec.name] = mode.fallback
            mode = await control.change(
                spec.name,
                stage=Stage.DYNAMO_PRIMARY,
                fallback=False,
                who=who,
                reason=f"{reason}: PostgreSQL receives writes again",
            )
            ways[spec.name] = WayBack(spec.name, Stage.DYNAMO_ONLY, mode.stage, mode.fallback)
        elif await reverse_sync_pending(pool, spec.name) is not None:
            if mode.stage is not Stage.DYNAMO_PRIMARY or mode.fallback:
                raise FailedPrecondition(
                    f"{spec.name}: on the way back from dynamo_only the table must stay in dynamo_primary with "
                    f"fallback off until the reverse sync is verified; it is in {mode.stage.value}, fallback "
                    f"{'on' if mode.fallback else 'off'}"
                )
            left = await pool.fetchrow(
                """SELECT from_fallback FROM migration.mode_changes WHERE id = $1""",
                await _left_dynamo_only(pool, spec.name),
            )
            restore[spec.name] = bool(left and left["from_fallback"])
            ways[spec.name] = WayBack(spec.name, mode.stage, mode.stage, mode.fallback)
        else:
            raise FailedPrecondition(
                f"{spec.name}: not in dynamo_only nor on the way back from it ({mode.stage.value}); "
                f"use `loanbook migrate rollback {spec.name}`"
            )
    synced = [spec for spec in specs if spec.name in ways]
    for summary in await run_reverse_sync(pool, dynamodb, synced, table_names, options, progress):
        ways[summary.table].sync = summary
    clean = [spec for spec in synced if ways[spec.name].sync is not None and ways[spec.name].complete]
    if clean:
        verify = dataclasses.replace(verify_options or VerifyOptions(), sample=1.0, repair=False)
        for checked in await run_verify(pool, dynamodb, clean, table_names, verify, progress):
            ways[checked.table].verification = checked
    for way in ways.values():
        if way.verification is None or not way.complete:
            continue
        fallback = restore[way.table]
        mode = await control.change(way.table, fallback=fallback, who=who, reason=f"{reason}: verified")
        if to is not None and to is not Stage.DYNAMO_PRIMARY:
            mode = await control.change(way.table, stage=to, who=who, reason=reason)
        way.stage, way.fallback = mode.stage, mode.fallback
    return list(ways.values())
