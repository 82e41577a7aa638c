"""Where each table stands in the migration, the next safe step, and what a rollback goes back to and guarantees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
from botocore.exceptions import ClientError

from chassis.errors import FailedPrecondition
from migration.control import ControlPlane, dynamo_receives_writes_since, reverse_sync_pending
from migration.journal import Backlog, Journal
from migration.stages import ORDER, Stage, TableMode
from migration.table_spec import TableSpec
from migration.verifications import latest_standing
from toolkit.dynamo_io import item_count
from toolkit.runs import BackfillRun, BackfillRuns

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class Verification:
    """The latest verification as the guards judge it (migration.verifications.Standing): an incremental one with
    an unbroken chain counts as full, from its full verification's start."""

    id: int
    clean: bool
    full: bool
    sample: float
    rows_checked: int
    differences: int
    started_at: datetime
    finished_at: datetime
    incremental: bool = False
    full_id: int | None = None  # the full verification an incremental one's chain goes back to
    broken: str | None = None  # why an incremental one's chain does not hold

    @property
    def scope(self) -> str:
        if not self.incremental:
            return "full" if self.full else f"sampled {self.sample:.0%}"
        if self.broken is not None:
            return f"incremental, chain broken ({self.broken})"
        return f"incremental, unbroken chain back to full verification {self.full_id}"


@dataclass(frozen=True)
class TableStatus:
    table: str
    mode: TableMode
    configured: bool  # False: no mode stored yet; the replicas assume postgres_only with fallback on
    backlog: Backlog
    postgres_rows: int
    dynamodb_items: int | None  # DescribeTable's estimate; None when the DynamoDB table does not exist
    last_backfill: BackfillRun | None
    last_verification: Verification | None
    next_step: str


async def last_verification(pool: asyncpg.Pool, table: str) -> Verification | None:
    standing = await latest_standing(pool, table)
    if standing is None:
        return None
    row = standing.record
    assert row is not None
    return Verification(
        row["id"],
        row["clean"],
        standing.full,
        row["sample_fraction"],
        row["rows_checked"],
        row["differences"],
        standing.started_at,
        row["finished_at"],
        standing.incremental,
        standing.full_id,
        standing.broken,
    )


def next_step(
    mode: TableMode,
    backlog: Backlog,
    backfill: BackfillRun | None,
    verification: Verification | None,
    reverse_sync: str | None = None,
    dynamo_writes_since: datetime | None = None,
) -> str:
    """The next safe move from here, as the guards in migration.control will judge it. `reverse_sync`: why
    PostgreSQL may still lack writes made in dynamo_only (see migration.control.reverse_sync_pending);
    `dynamo_writes_since`: when the table last left postgres_only (see dynamo_receives_writes_since)."""
    table, stage = mode.table, mode.stage
    if stage is Stage.POSTGRES_ONLY:
        return f"switch to dual_write (`loanbook migrate switch {table} dual_write`), then backfill"
    if stage is Stage.DYNAMO_ONLY:
        return (
            "none: the migration is complete (PostgreSQL no longer receives writes); the way back is "
            f"`loanbook migrate rollback {table}` (reverse sync into PostgreSQL, then verify)"
        )
    if reverse_sync is not None:
        return f"finish the way back from dynamo_only: `loanbook migrate rollback {table}` ({reverse_sync})"
    if backfill is None or backfill.status != "finished":
        what = "resume the backfill" if backfill is not None else "backfill"
        return f"{what} (`loanbook migrate backfill {table}`), then verify"
    since = dynamo_writes_since
    if since is not None and backfill.started_at < since:
        return (
            f"backfill again (`loanbook migrate backfill {table}`), then verify: the last backfill ran before the "
            f"table left postgres_only ({since:%Y-%m-%d %H:%M:%S %Z}), and writes made there are only in PostgreSQL"
        )
    verified = (
        verification is not None
        and verification.clean
        and verification.broken is None
        and backfill.finished_at is not None
        and verification.started_at >= backfill.finished_at
        and (since is None or verification.started_at >= since)
    )
    if not verified:
        return f"verify (`loanbook migrate verify {table}`)" + (
            " and repair the differences it reports" if verification is not None and not verification.clean else ""
        )
    forward = {
        Stage.DUAL_WRITE: "switch to shadow (PostgreSQL serves, DynamoDB is compared)",
        Stage.SHADOW: "switch to dynamo_live once shadow mismatches stay at zero",
        Stage.DYNAMO_LIVE: "switch to dynamo_primary once PostgreSQL comparisons stay clean",
    }
    if stage in forward:
        return forward[stage]
    assert verification is not None
    if not verification.full:
        return f"run a full verification (`loanbook migrate verify {table}` without --sample or --incremental)"
    if backlog.pending:
        return f"wait for the relay to drain the journal ({backlog.pending} pending), then switch to dynamo_only"
    return "switch to dynamo_only (PostgreSQL stops receiving writes; rollback is then no longer lossless)"


async def table_status(pool: asyncpg.Pool, dynamodb: DynamoDBClient, spec: TableSpec, table_name: str) -> TableStatus:
    control = ControlPlane(pool)
    modes = await control.modes()
    configured = spec.name in modes
    mode = modes.get(spec.name) or TableMode(spec.name, Stage.POSTGRES_ONLY, fallback=True)
    backlog = await Journal(pool, spec.name).backlog()
    try:
        items: int | None = await item_count(dynamodb, table_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        items = None
    backfill = await BackfillRuns(pool).latest(spec.name)
    verification = await last_verification(pool, spec.name)
    pending = await reverse_sync_pending(pool, spec.name)
    since = await dynamo_receives_writes_since(pool, spec.name)
    return TableStatus(
        spec.name,
        mode,
        configured,
        backlog,
        await spec.count(pool),
        items,
        backfill,
        verification,
        next_step(mode, backlog, backfill, verification, pending, since["changed_at"] if since else None),
    )


# --- rollback ------------------------------------------------------------------------------------------------

# Where `rollback` goes from each stage: reads back on PostgreSQL, DynamoDB still written where it was. From
# dynamo_only the way back starts at dynamo_primary (PostgreSQL receives writes again, DynamoDB still serves) and
# a reverse sync (toolkit.reverse_sync) copies back what PostgreSQL missed.
ROLLBACK_TO = {
    Stage.DUAL_WRITE: Stage.POSTGRES_ONLY,
    Stage.SHADOW: Stage.DUAL_WRITE,
    Stage.DYNAMO_LIVE: Stage.SHADOW,
    Stage.DYNAMO_PRIMARY: Stage.SHADOW,
    Stage.DYNAMO_ONLY: Stage.DYNAMO_PRIMARY,
}


def rollback_guarantee(target: Stage) -> str:
    """What holds after rolling back to `target` from a stage in which PostgreSQL received every write."""
    if target is Stage.POSTGRES_ONLY:
        return (
            "PostgreSQL holds every acknowledged write and serves every read. DynamoDB stops receiving writes: "
            "moving forward again needs dual_write, a new backfill and a verification."
        )
    compared = " and compared with PostgreSQL in the background" if target is Stage.SHADOW else ""
    return (
        "PostgreSQL holds every acknowledged write (it received all of them while the table was dual-writing) and "
        f"serves every read. DynamoDB keeps receiving every write{compared}, so moving forward again needs no backfill."
    )


def reverse_sync_guarantee(settle_seconds: float) -> str:
    """What holds after a rollback out of dynamo_only whose reverse sync and verification came out clean."""
    return (
        "Every acknowledged write is in PostgreSQL at its latest version: since the switch to dynamo_primary every "
        "write went to PostgreSQL (and DynamoDB); every item DynamoDB held when the reverse sync scanned it was "
        "copied back (an insert, or an update only where PostgreSQL held an older version: a newer PostgreSQL "
        "version is never replaced; log entries are inserted where absent); and a clean full verification that "
        "started after the sync compared both stores. DynamoDB still serves reads (dynamo_primary); rolling back "
        "further (shadow, dual_write, postgres_only) is now lossless. Assumed: every replica followed the switch "
        f"within {settle_seconds:g} s (the sync waits that long before scanning); a write made to DynamoDB alone "
        "after that would have shown in the verification as an extra item. Until the verification passed, "
        "PostgreSQL answered no read (fallback was off)."
    )


def rollback_target(mode: TableMode, to: Stage | None = None) -> Stage:
    """The stage a rollback moves to, or FailedPrecondition saying why there is none that loses nothing.

    From dynamo_only the move itself is to dynamo_primary: the caller runs the reverse sync and the verification
    (toolkit.reverse_sync.rollback_out_of_dynamo_only) before going on to an earlier `to`."""
    if mode.stage is Stage.POSTGRES_ONLY:
        raise FailedPrecondition(f"{mode.table}: already in postgres_only, the first stage; nothing to roll back")
    if to is None:
        return ROLLBACK_TO[mode.stage]
    if ORDER.index(to) >= ORDER.index(mode.stage):
        raise FailedPrecondition(
            f"{mode.table}: a rollback goes to an earlier stage than {mode.stage.value}, not to {to.value}"
        )
    return to
