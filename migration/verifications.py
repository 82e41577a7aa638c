"""What a table's verifications vouch for: a clean full one, or an unbroken chain of incremental ones back to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis.errors import FailedPrecondition

Executor = asyncpg.Connection | asyncpg.Pool | asyncpg.pool.PoolConnectionProxy

_TIME = "%Y-%m-%d %H:%M:%S %Z"


@dataclass(frozen=True)
class Standing:
    """A table's latest verification as the control plane's guards judge it.

    An incremental verification compared only the keys written since the verification it follows; it stands for a
    full one when its chain back to a clean full verification is unbroken: every link clean, no verification in
    between that found differences, no stage without key history (postgres_only, dynamo_only), no backfill, and
    no key history dropped before a verification covered it. Then `started_at` is the full verification's start."""

    id: int
    clean: bool
    full: bool  # a full scan, or an incremental one standing for one
    incremental: bool
    started_at: datetime
    broken: str | None = None  # why an incremental verification's chain does not hold
    full_id: int | None = None  # the full verification the chain goes back to
    record: asyncpg.Record | None = None  # its row of migration.verifications, as recorded


async def latest_standing(executor: Executor, table: str) -> Standing | None:
    """The table's latest verification, an incremental one judged by its chain; None if it has none."""
    latest = await executor.fetchrow(
        "SELECT * FROM migration.verifications WHERE table_name = $1 ORDER BY finished_at DESC, id DESC LIMIT 1", table
    )
    if latest is None:
        return None
    if not latest["incremental"]:
        return Standing(
            latest["id"],
            latest["clean"],
            latest["full_scan"],
            False,
            latest["started_at"],
            full_id=latest["id"],
            record=latest,
        )
    root, broken = await _chain_root(executor, table, latest["id"])
    if root is None:
        return Standing(latest["id"], latest["clean"], False, True, latest["started_at"], broken, record=latest)
    return Standing(latest["id"], latest["clean"], broken is None, True, root["started_at"], broken, root["id"], latest)


async def chain_head(executor: Executor, table: str) -> asyncpg.Record:
    """The verification a new incremental one follows: the latest full or incremental one, clean, with an unbroken
    chain; FailedPrecondition saying why there is none (then only a full verification can vouch for the table)."""
    head = await executor.fetchrow(
        """SELECT * FROM migration.verifications WHERE table_name = $1 AND (full_scan OR incremental)
           ORDER BY finished_at DESC, id DESC LIMIT 1""",
        table,
    )
    full_needed = f"; run a full verification (`loanbook migrate verify {table}`) first"
    if head is None:
        raise FailedPrecondition(
            f"{table}: an incremental verification builds on a clean full one: none yet" + full_needed
        )
    if not head["clean"]:
        raise FailedPrecondition(f"{table}: verification {head['id']} found differences" + full_needed)
    if head["incremental"]:
        root, broken = await _chain_root(executor, table, head["id"])
    else:
        root, broken = head, await chain_break(executor, table, head)
    if broken is not None:
        raise FailedPrecondition(f"{table}: the incremental chain is broken: {broken}" + full_needed)
    assert root is not None
    return head


async def _chain_root(executor: Executor, table: str, link: int) -> tuple[asyncpg.Record | None, str | None]:
    """The full verification an incremental one goes back to (by `follows`), and why the chain is broken if it is."""
    links = await executor.fetch(
        """WITH RECURSIVE chain AS (
               SELECT v.*, 0 AS depth FROM migration.verifications v WHERE v.id = $1
               UNION ALL
               SELECT v.*, chain.depth + 1 FROM migration.verifications v JOIN chain ON v.id = chain.follows)
           SELECT * FROM chain ORDER BY depth""",
        link,
    )
    root = links[-1]
    if root["incremental"] or not root["full_scan"]:
        return None, f"verification {link} does not go back to a full verification"
    unclean = [row["id"] for row in links if not row["clean"]]
    if unclean:
        return root, f"verification {unclean[-1]} in the chain found differences"
    return root, await chain_break(executor, table, root)


async def chain_break(executor: Executor, table: str, full: asyncpg.Record) -> str | None:
    """Why the keys written since this full verification may not all be in the key history, or DynamoDB may have
    changed outside it (None: neither)."""
    if full["covers"] is None:
        return f"full verification {full['id']} recorded no snapshot (it ran before key history was kept)"
    since = full["started_at"]
    unclean = await executor.fetchrow(
        """SELECT id, finished_at FROM migration.verifications
           WHERE table_name = $1 AND NOT clean AND finished_at > $2 ORDER BY id LIMIT 1""",
        table,
        since,
    )
    if unclean is not None:
        return (
            f"verification {unclean['id']} found differences ({unclean['finished_at']:{_TIME}}) after full "
            f"verification {full['id']} started"
        )
    unrecorded = await executor.fetchrow(
        """SELECT to_stage, changed_at FROM migration.mode_changes
           WHERE table_name = $1 AND changed_at > $2 AND to_stage IN ('postgres_only', 'dynamo_only')
           ORDER BY id LIMIT 1""",
        table,
        since,
    )
    if unrecorded is not None:
        return (
            f"the table was in {unrecorded['to_stage']} from {unrecorded['changed_at']:{_TIME}}, where writes are not "
            "journaled and leave no key history"
        )
    backfill = await executor.fetchrow(
        """SELECT id, started_at FROM migration.backfill_runs WHERE table_name = $1 AND started_at > $2
           ORDER BY id LIMIT 1""",
        table,
        since,
    )
    if backfill is not None:
        return (
            f"backfill run {backfill['id']} ({backfill['started_at']:{_TIME}}) rewrote DynamoDB items that no "
            "journaled write names"
        )
    gap = await executor.fetchrow(
        """SELECT rows, oldest, newest, reason, recorded_at FROM migration.key_history_gaps
           WHERE table_name = $1
             AND NOT migration.snapshot_covers((SELECT covers FROM migration.verifications WHERE id = $2), snapshot)
           ORDER BY id LIMIT 1""",
        table,
        full["id"],
    )
    if gap is not None:
        return (
            f"the key history of {gap['rows']:,} writes ({gap['oldest']:{_TIME}} to {gap['newest']:{_TIME}}) was "
            f"dropped at {gap['recorded_at']:{_TIME}}, {gap['reason']}, before a verification covered it"
        )
    return None
