"""Backfill and verify split over several processes: one run, its ranges leased, a dead process's share taken over."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from chassis.errors import FailedPrecondition
from migration.stages import Stage
from tests.support.toolkit import Stores, insert_payments, set_stage, toolkit_environment
from toolkit.backfill import BackfillOptions, NoProgress, _plan_run, backfill_table
from toolkit.leases import BACKFILL_RANGES, LeaseLost, Leases
from toolkit.runs import BackfillRuns
from toolkit.verify import run_verify

PAYMENTS = 3000


async def ranges(stores: Stores, run_id: int) -> list[asyncpg.Record]:
    return await stores.pool.fetch(
        "SELECT range_no, rows_done, done, leased_by FROM migration.backfill_ranges WHERE run_id = $1", run_id
    )


async def test_two_backfills_of_one_table_share_one_run_and_copy_each_row_once(
    stores: Stores, second_pool: asyncpg.Pool
) -> None:
    await insert_payments(stores.pool, PAYMENTS)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    [spec] = stores.specs("payments")
    # Paced, so that neither can finish before the other has started.
    options = BackfillOptions(workers=2, batch_rows=100, rate_limit=3000)

    first, second = await asyncio.gather(
        backfill_table(stores.pool, stores.dynamodb, spec, stores.table_name("payments"), options, NoProgress()),
        backfill_table(second_pool, stores.dynamodb, spec, stores.table_name("payments"), options, NoProgress()),
    )
    [verified] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    assert first.run_id == second.run_id
    assert min(first.rows, second.rows) > 0, (first.rows, second.rows)
    assert first.rows + second.rows == PAYMENTS  # no range, no page copied twice
    assert (first.rows_done, second.rows_done) == (PAYMENTS, PAYMENTS)  # each sees the whole run's progress
    assert all(r["done"] and r["leased_by"] is None for r in await ranges(stores, first.run_id))
    assert await stores.pool.fetchval("SELECT status FROM migration.backfill_runs WHERE id = $1", first.run_id) == (
        "finished"
    )
    assert (verified.clean, verified.rows_checked) == (True, PAYMENTS)


async def test_a_range_leased_by_a_dead_process_is_taken_over_once_its_lease_expires(stores: Stores) -> None:
    await insert_payments(stores.pool, PAYMENTS)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    [spec] = stores.specs("payments")
    options = BackfillOptions(workers=2, batch_rows=100, lease_seconds=2)
    run = await _plan_run(stores.pool, spec, Stage.DUAL_WRITE, options)
    dead = Leases(stores.pool, BACKFILL_RANGES, run.id, "dead-host:1:000000", lease_seconds=1)
    claimed = await dead.claim()  # and then the process dies without a checkpoint
    assert claimed is not None

    summary = await backfill_table(
        stores.pool, stores.dynamodb, spec, stores.table_name("payments"), options, NoProgress()
    )
    [verified] = await run_verify(stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name)

    assert summary.run_id == run.id
    assert summary.rows == PAYMENTS
    assert all(r["done"] for r in await ranges(stores, run.id))
    assert verified.clean


async def test_a_process_whose_lease_was_taken_over_cannot_checkpoint_or_renew(stores: Stores) -> None:
    await insert_payments(stores.pool, 200)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    [spec] = stores.specs("payments")
    run = await _plan_run(stores.pool, spec, Stage.DUAL_WRITE, BackfillOptions(workers=1, ranges_per_worker=1))
    slow = Leases(stores.pool, BACKFILL_RANGES, run.id, "slow-host:1:000000", lease_seconds=30)
    claimed = await slow.claim()
    assert claimed is not None
    # Its lease runs out (a long pause), and another process claims the range.
    await stores.pool.execute(
        "UPDATE migration.backfill_ranges SET lease_expires_at = now() - interval '1 second' WHERE run_id = $1", run.id
    )
    other = Leases(stores.pool, BACKFILL_RANGES, run.id, "other-host:2:000000", lease_seconds=30)
    assert (await other.claim()) is not None
    assert await slow.claim() is None  # nothing left to claim while the other holds it

    with pytest.raises(LeaseLost):
        await BackfillRuns.checkpoint(stores.pool, slow, claimed["range_no"], ("x",), 100, 200, done=True)
    with pytest.raises(LeaseLost):
        await slow.renew(claimed["range_no"])

    async def never_ends() -> None:
        await asyncio.Event().wait()

    assert await slow.hold_while(claimed["range_no"], never_ends()) is False
    [row] = await ranges(stores, run.id)
    assert (row["rows_done"], row["done"], row["leased_by"]) == (0, False, "other-host:2:000000")


async def test_restarting_a_run_other_processes_are_copying_is_refused(stores: Stores) -> None:
    await insert_payments(stores.pool, 200)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    [spec] = stores.specs("payments")
    run = await _plan_run(stores.pool, spec, Stage.DUAL_WRITE, BackfillOptions(workers=1))
    busy = Leases(stores.pool, BACKFILL_RANGES, run.id, "busy-host:7:000000", lease_seconds=30)
    assert await busy.claim() is not None

    with pytest.raises(FailedPrecondition, match=r"other processes are copying 1 of its ranges \(busy-host:7:000000\)"):
        await _plan_run(stores.pool, spec, Stage.DUAL_WRITE, BackfillOptions(workers=1, restart=True))


async def test_two_backfill_processes_and_two_verify_processes_finish_one_run_each_clean(stores: Stores) -> None:
    await insert_payments(stores.pool, PAYMENTS)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    env = {**os.environ, **toolkit_environment(stores.dsn, stores.endpoint, stores.prefix), "OTEL_SDK_DISABLED": "true"}

    async def loanbook(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "toolkit", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 180)
        assert process.returncode is not None
        return process.returncode, out.decode()

    backfill = ("migrate", "backfill", "payments", "--workers", "2", "--batch-rows", "100", "--rate-limit", "2000")
    backfills = await asyncio.gather(loanbook(*backfill), loanbook(*backfill))
    verifies = await asyncio.gather(*(loanbook("migrate", "verify", "payments", "--workers", "2") for _ in range(2)))

    for code, out in backfills:
        assert code == 0, out
    copied = [int(out.split(" copied ")[1].split(" rows")[0].replace(",", "")) for _, out in backfills]
    assert sum(copied) == PAYMENTS, copied
    assert min(copied) > 0, copied
    assert len({out.split(": run ")[1].split()[0] for _, out in backfills}) == 1  # one run
    for code, out in verifies:
        assert code == 0, out
        assert "payments: clean" in out
    recorded = await stores.pool.fetch("SELECT clean, full_scan, rows_checked FROM migration.verifications")
    assert [tuple(row) for row in recorded] == [(True, True, PAYMENTS)]  # one verification, recorded once
