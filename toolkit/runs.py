"""Backfill runs and their per-range checkpoints in PostgreSQL, so a killed run resumes where it stopped."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from migration.table_spec import Executor, Key
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
        executor: Executor, leases: Leases, range_no: int, last: Key | None, rows: int, items: int, *, done: bool
    ) -> None:
        """Called in the transaction that read (and, for payments, locked) the rows, after DynamoDB took them. Renews
        the range's lease, or raises LeaseLost (rolling the transaction back) if another process took it over."""
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
