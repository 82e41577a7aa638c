"""Backfill runs and their per-range checkpoints in PostgreSQL, so a killed run resumes where it stopped."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis.errors import FailedPrecondition
from migration.table_spec import Executor, Key
from toolkit.dynamo_io import Consumed
from toolkit.leases import LeaseLost, Leases


@dataclass(frozen=True)
class KeyRange:
    """Rows with lower < key <= upper (None: unbounded); every row up to `last` is already in DynamoDB."""

    number: int
    lower: Key | None
    upper: Key | None
    last: Key | None
    rows_done: int
    items_done: int
    done: bool


@dataclass(frozen=True)
class BackfillRun:
    id: int
    table: str
    status: str
    stage: str
    rows_total: int
    rows_done: int
    started_at: datetime
    finished_at: datetime | None
    ranges: tuple[KeyRange, ...] = ()
    # Capacity units the run's DynamoDB calls consumed, added up by every process working on it.
    consumed_read_units: float = 0.0
    consumed_write_units: float = 0.0


def split_ranges(sampled: Sequence[Key], count: int) -> list[tuple[Key | None, Key | None]]:
    """`count` contiguous ranges covering the whole key space, cut at quantiles of a sorted key sample so that
    each holds about as many rows (whatever the key distribution, e.g. time-ordered UUIDs)."""
    cuts: list[Key] = []
    for index in range(1, count):
        if sampled:
            cut = sampled[index * len(sampled) // count]
            if not cuts or cut > cuts[-1]:
                cuts.append(cut)
    bounds: list[Key | None] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def _key(value: list[str] | None) -> Key | None:
    return tuple(value) if value is not None else None


def key_range(row: asyncpg.Record) -> KeyRange:
    return KeyRange(
        row["range_no"],
        _key(row["lower_key"]),
        _key(row["upper_key"]),
        _key(row["last_key"]),
        row["rows_done"],
        row["items_done"],
        row["done"],
    )


def _run(row: asyncpg.Record, ranges: Sequence[asyncpg.Record] = ()) -> BackfillRun:
    return BackfillRun(
        id=row["id"],
        table=row["table_name"],
        status=row["status"],
        stage=row["stage"],
        rows_total=row["rows_total"],
        rows_done=row["rows_done"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        ranges=tuple(key_range(r) for r in ranges),
        consumed_read_units=row["consumed_read_units"],
        consumed_write_units=row["consumed_write_units"],
    )


RUN_COLUMNS = """r.*, coalesce((SELECT sum(rows_done) FROM migration.backfill_ranges WHERE run_id = r.id), 0)::bigint
                 AS rows_done"""


class BackfillRuns:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def unfinished(self, table: str) -> BackfillRun | None:
        row = await self._pool.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM migration.backfill_runs r WHERE table_name = $1 AND status = 'running'",  # noqa: S608
            table,
        )
        if row is None:
            return None
        ranges = await self._pool.fetch(
            "SELECT * FROM migration.backfill_ranges WHERE run_id = $1 ORDER BY range_no", row["id"]
        )
        return _run(row, ranges)

    async def latest(self, table: str) -> BackfillRun | None:
        row = await self._pool.fetchrow(
            f"""SELECT {RUN_COLUMNS} FROM migration.backfill_runs r WHERE table_name = $1 AND status <> 'abandoned'
                ORDER BY id DESC LIMIT 1""",  # noqa: S608
            table,
        )
        return _run(row) if row else None

    async def start(
        self, table: str, stage: str, who: str, rows_total: int, ranges: Sequence[tuple[Key | None, Key | None]]
    ) -> BackfillRun:
        async with self._pool.acquire() as connection, connection.transaction():
            run_id = await connection.fetchval(
                """INSERT INTO migration.backfill_runs (table_name, stage, started_by, rows_total)
                   VALUES ($1, $2, $3, $4) RETURNING id""",
                table,
                stage,
                who,
                rows_total,
            )
            await connection.executemany(
                """INSERT INTO migration.backfill_ranges (run_id, range_no, lower_key, upper_key)
                   VALUES ($1, $2, $3, $4)""",
                [(run_id, number, lower, upper) for number, (lower, upper) in enumerate(ranges)],
            )
        run = await self.unfinished(table)
        assert run is not None and run.id == run_id
        return run

    async def abandon(self, run_id: int) -> None:
        await self._pool.execute(
            "UPDATE migration.backfill_runs SET status = 'abandoned', updated_at = now() WHERE id = $1", run_id
        )

    @staticmethod
    async def checkpoint(
        executor: Executor,
        leases: Leases,
        range_no: int,
        last: Key | None,
        rows: int,
        items: int,
        *,
        done: bool,
        consumed: Consumed | None = None,
    ) -> None:
        """Called in the transaction that read (and, for payments, locked) the rows, after DynamoDB took them. Renews
        the range's lease, or raises LeaseLost (rolling the transaction back) if another process took it over. The
        capacity the page's writes consumed is added to the run's, with the checkpoint."""
        status = await executor.execute(
            """UPDATE migration.backfill_ranges
               SET last_key = coalesce($3, last_key), rows_done = rows_done + $4, items_done = items_done + $5,
                   done = $6, leased_by = CASE WHEN $6 THEN NULL ELSE leased_by END,
                   lease_expires_at = CASE WHEN $6 THEN NULL ELSE now() + make_interval(secs => $8) END,
                   updated_at = now()
               WHERE run_id = $1 AND range_no = $2 AND leased_by = $7""",
            leases.run_id,
            range_no,
            list(last) if last is not None else None,
            rows,
            items,
            done,
            leases.holder,
            leases.lease_seconds,
        )
        if status != "UPDATE 1":
            raise LeaseLost(f"range {range_no} of backfill run {leases.run_id} was taken over by another process")
        if consumed is not None and (consumed.read or consumed.write):
            # Added, never set: several processes may be copying ranges of the same run.
            await executor.execute(
                """UPDATE migration.backfill_runs
                   SET consumed_read_units = consumed_read_units + $2, consumed_write_units = consumed_write_units + $3
                   WHERE id = $1""",
                leases.run_id,
                consumed.read,
                consumed.write,
            )

    async def rows_done(self, run_id: int) -> int:
        """Rows copied so far by every process working on the run."""
        done: int = await self._pool.fetchval(
            "SELECT coalesce(sum(rows_done), 0)::bigint FROM migration.backfill_ranges WHERE run_id = $1", run_id
        )
        return done

    async def finish(self, run_id: int) -> None:
        await self._pool.execute(
            """UPDATE migration.backfill_runs SET status = 'finished', finished_at = now(), updated_at = now()
               WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM migration.backfill_ranges WHERE run_id = $1 AND NOT done)""",
            run_id,
        )


# --- full verifications shared by several processes --------------------------------------------------------------

DIGEST_SIDES = ("postgres", "dynamo")


def digest_table(run_id: int, side: str) -> str:
    """The table (in schema migration) holding one side's (key, digest) pairs of a verification run."""
    assert side in DIGEST_SIDES
    return f"verify_{int(run_id)}_{side}"


@dataclass
class UnitCounts:
    """What one unit of a verification run compared, written when the unit is done."""

    rows_checked: int = 0
    items_checked: int = 0
    items_scanned: int = 0


class VerifyRuns:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def join_or_plan(
        self,
        table: str,
        who: str,
        *,
        restart: bool,
        repair: bool,
        rows_total: Callable[[], Awaitable[int]],
        units: Callable[[], Awaitable[Sequence[tuple[Key | None, Key | None, int | None, int | None]]]],
    ) -> int:
        """The table's running full verification, joined, or a new one with its units and digest tables. Processes
        starting at once serialise on an advisory lock while planning, so they all join one run."""
        async with self._pool.acquire() as connection:
            await connection.execute("SELECT pg_advisory_lock($1)", lock_key("verify", table))
            try:
                running = await connection.fetchval(
                    "SELECT id FROM migration.verify_runs WHERE table_name = $1 AND status = 'running'", table
                )
                if running is not None and not restart:
                    return int(running)
                if running is not None:
                    await self.abandon(connection, running)
                planned = await units()
                async with connection.transaction():
                    run_id: int = await connection.fetchval(
                        # `covers`: taken before any unit is read, so whatever any process compares is later.
                        """INSERT INTO migration.verify_runs (table_name, repair, started_by, rows_total, covers)
                           VALUES ($1, $2, $3, $4, pg_current_snapshot()) RETURNING id""",
                        table,
                        repair,
                        who,
                        await rows_total(),
                    )
                    await connection.executemany(
                        """INSERT INTO migration.verify_units
                               (run_id, unit_no, lower_key, upper_key, segment, total_segments)
                           VALUES ($1, $2, $3, $4, $5, $6)""",
                        [
                            (run_id, number, list(lower) if lower else None, list(upper) if upper else None, seg, of)
                            for number, (lower, upper, seg, of) in enumerate(planned)
                        ],
                    )
                    for side in DIGEST_SIDES:
                        # UNLOGGED: scratch data, rebuilt by verifying again if PostgreSQL crashes.
                        await connection.execute(
                            f"""CREATE UNLOGGED TABLE migration.{digest_table(run_id, side)}
                                (key text[] NOT NULL, digest bytea NOT NULL)"""
                        )
                return run_id
            finally:
                await connection.execute("SELECT pg_advisory_unlock($1)", lock_key("verify", table))

    async def abandon(self, executor: Executor, run_id: int) -> None:
        busy = await executor.fetchval(
            """SELECT count(*) FROM migration.verify_units
               WHERE run_id = $1 AND NOT done AND lease_expires_at > now()""",
            run_id,
        )
        if busy:
            raise FailedPrecondition(
                f"cannot restart verification run {run_id}: other processes are working on {busy} of its units; "
                "stop them first, or run without --restart to join them"
            )
        await executor.execute("UPDATE migration.verify_runs SET status = 'abandoned' WHERE id = $1", run_id)
        await self._drop_digests(executor, run_id)

    async def unit_done(self, leases: Leases, unit_no: int, counts: UnitCounts) -> None:
        status = await self._pool.execute(
            """UPDATE migration.verify_units
               SET done = true, leased_by = NULL, lease_expires_at = NULL, rows_checked = $4, items_checked = $5,
                   items_scanned = $6, updated_at = now()
               WHERE run_id = $1 AND unit_no = $2 AND leased_by = $3""",
            leases.run_id,
            unit_no,
            leases.holder,
            counts.rows_checked,
            counts.items_checked,
            counts.items_scanned,
        )
        if status != "UPDATE 1":
            raise LeaseLost(f"unit {unit_no} of verification run {leases.run_id} was taken over by another process")

    async def get(self, run_id: int) -> asyncpg.Record:
        # The snapshot as text: the form migration.verifications.covers is written back from.
        row = await self._pool.fetchrow(
            "SELECT *, covers::text AS covers_text FROM migration.verify_runs WHERE id = $1", run_id
        )
        assert row is not None
        return row

    async def totals(self, run_id: int) -> UnitCounts:
        row = await self._pool.fetchrow(
            """SELECT coalesce(sum(rows_checked), 0)::bigint AS rows, coalesce(sum(items_checked), 0)::bigint AS items,
                      coalesce(sum(items_scanned), 0)::bigint AS scanned
               FROM migration.verify_units WHERE run_id = $1""",
            run_id,
        )
        assert row is not None
        return UnitCounts(row["rows"], row["items"], row["scanned"])

    async def finish(self, executor: Executor, run_id: int, verification_id: int) -> None:
        await executor.execute(
            """UPDATE migration.verify_runs SET status = 'finished', finished_at = now(), verification_id = $2
               WHERE id = $1""",
            run_id,
            verification_id,
        )
        await self._drop_digests(executor, run_id)

    @staticmethod
    async def _drop_digests(executor: Executor, run_id: int) -> None:
        for side in DIGEST_SIDES:
            await executor.execute(f"DROP TABLE IF EXISTS migration.{digest_table(run_id, side)}")


def lock_key(job: str, name: str) -> int:
    """An advisory lock key for one job on one table (or run)."""
    return int.from_bytes(hashlib.sha256(f"loanbook-{job}:{name}".encode()).digest()[:7], "big")
