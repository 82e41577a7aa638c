"""Backfill, verify and reverse-sync runs record the DynamoDB capacity they consumed: what toolkit.cost predicts."""

from __future__ import annotations

import asyncio

import asyncpg

from chassis.dynamodb_tables import TableDesign
from migration.stages import Stage
from migration.table_spec import Item, TableSpec
from services.logging.adapters.dynamodb import LOG_TABLE
from services.payment.adapters.dynamodb import PAYMENT_TABLE
from tests.support.metrics import metric_reader, total
from tests.support.toolkit import Stores, insert_logs, insert_payments, migrated_to_dynamo_only, set_stage
from toolkit.backfill import BackfillOptions, NoProgress, backfill_table, run_backfill
from toolkit.cost.operations import BatchWrite, ScanPage, units_per_call
from toolkit.reverse_sync import ReverseSyncOptions, run_reverse_sync
from toolkit.verify import VerifyOptions, run_verify

PAYMENTS = 300
LOGS = 400
DESIGNS: dict[str, TableDesign] = {"payments": PAYMENT_TABLE, "logs": LOG_TABLE}
# One Scan segment and pages larger than the tables: a full verification reads each table in one Scan call.
ONE_SCAN = VerifyOptions(workers=1, segments_per_worker=1, scan_page_items=5000)


async def items_of(stores: Stores, spec: TableSpec) -> list[Item]:
    """Every item the table's rows become, as the backfill writes them."""
    rows = await spec.read_page(stores.pool, None, None, 100_000)
    return [item for row in rows for item in spec.items(row)]


async def recorded(stores: Stores, table: str, run_table: str) -> tuple[float, float]:
    row = await stores.pool.fetchrow(
        f"""SELECT consumed_read_units, consumed_write_units FROM migration.{run_table}
            WHERE table_name = $1 ORDER BY id DESC LIMIT 1""",  # noqa: S608 - a fixed name
        table,
    )
    assert row is not None
    return row["consumed_read_units"], row["consumed_write_units"]


async def test_a_backfill_and_a_verify_record_what_their_calls_consume(stores: Stores) -> None:
    metric_reader()
    await insert_payments(stores.pool, PAYMENTS)
    await insert_logs(stores.pool, LOGS)
    for table in ("payments", "logs"):
        await set_stage(stores.pool, table, Stage.DUAL_WRITE)

    backfilled = await run_backfill(
        stores.pool, stores.dynamodb, stores.specs(), stores.table_name, BackfillOptions(workers=3, batch_rows=50)
    )
    verified = await run_verify(stores.pool, stores.dynamodb, stores.specs(), stores.table_name, ONE_SCAN)

    for spec, backfill, verification in zip(stores.specs(), backfilled, verified, strict=True):
        items = await items_of(stores, spec)
        # BatchWriteItem puts, not transactional: each item per started KB, and its entry in each index
        writes = units_per_call(BatchWrite(items, DESIGNS[spec.name])).write_total
        reads = units_per_call(ScanPage(items)).read_total  # one strongly consistent Scan page
        assert writes > len(items)  # the indexes' share is in
        assert (backfill.read_units, backfill.write_units) == (0, writes)
        assert await recorded(stores, spec.name, "backfill_runs") == (0, writes)
        assert verification.clean
        assert (verification.read_units, verification.write_units) == (reads, 0)
        assert await recorded(stores, spec.name, "verifications") == (reads, 0)
        # and the calls were counted as the metric, table and indexes (the only calls on this fresh table)
        name = stores.table_name(spec.name)
        assert total("loanbook.dynamodb.consumed_capacity", aws__dynamodb__table_name=name) == writes + reads


async def test_processes_sharing_a_backfill_run_add_their_units_to_it(
    stores: Stores, second_pool: asyncpg.Pool
) -> None:
    await insert_payments(stores.pool, PAYMENTS)
    await set_stage(stores.pool, "payments", Stage.DUAL_WRITE)
    [spec] = stores.specs("payments")
    # Paced, so that neither can finish before the other has started.
    options = BackfillOptions(workers=2, batch_rows=25, rate_limit=1000)

    first, second = await asyncio.gather(
        backfill_table(stores.pool, stores.dynamodb, spec, stores.table_name("payments"), options, NoProgress()),
        backfill_table(second_pool, stores.dynamodb, spec, stores.table_name("payments"), options, NoProgress()),
    )

    assert first.run_id == second.run_id
    assert min(first.write_units, second.write_units) > 0, (first.write_units, second.write_units)
    writes = units_per_call(BatchWrite(await items_of(stores, spec), PAYMENT_TABLE)).write_total
    assert first.write_units + second.write_units == writes
    assert await recorded(stores, "payments", "backfill_runs") == (0, writes)


async def test_a_reverse_sync_records_what_its_scan_consumed(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores, payments=80, logs=0)
    await control.change("payments", stage=Stage.DYNAMO_PRIMARY, fallback=False, who="test")
    [spec] = stores.specs("payments")
    one_scan = ReverseSyncOptions(segments=1, page_items=5000, settle_seconds=0)

    [summary] = await run_reverse_sync(stores.pool, stores.dynamodb, [spec], stores.table_name, one_scan)

    reads = units_per_call(ScanPage(await items_of(stores, spec))).read_total
    assert summary.items_scanned == 160
    assert summary.read_units == reads > 0
    assert await recorded(stores, "payments", "reverse_syncs") == (reads, 0)
