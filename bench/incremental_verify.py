"""An incremental verification against a full one, side by side in one run, after writes to a seeded table.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.incremental_verify [--payments 500000 --writes 10000]`. Seeds
payments as `loanbook seed` does (PostgreSQL only), backfills them into DynamoDB Local and verifies in full: the
chain's start. Then, each round: `--writes` writes through the payment service's own hybrid store in dual_write (half
new payments, half reversals of seeded ones, each key written once; the relay running, the journal drained), then an
incremental verification and a full one, same options, unpaced. Always in that order: a clean full verification
starts a new chain, after which an incremental one would have nothing written to compare."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import asyncpg
from aiobotocore.config import AioConfig

from bench.harness import (
    command_line,
    local_dynamodb_session,
    local_stores,
    run_and_report,
    sized_option,
    wait_for,
)
from chassis.ids import new_id
from chassis.stores import SDK_USER_AGENT
from migration.control import ControlPlane
from migration.hybrid import HybridSettings
from migration.journal import DEFAULT_SETTLE
from migration.relay import Relay
from migration.runtime import hybrid_table
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository, payment_from_row
from services.payment.domain import Payment, PaymentStatus
from services.payment.store import INDEX_READ_KINDS, HybridPaymentStore
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.seeding import SeedPlan, seed
from toolkit.specs import table_specs
from toolkit.verify import VerifyOptions, VerifySummary, run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

PREFIX = "bench"
WRITERS = 16
# `loanbook seed`'s defaults: customers, days of history, the random seed.
SEED_CUSTOMERS, SEED_DAYS, SEED_VALUE = 10_000, 365, 1


def table_name(table: str) -> str:
    return f"{PREFIX}-{table}"


@contextlib.asynccontextmanager
async def dual_writing_store(pool: asyncpg.Pool, client: DynamoDBClient) -> AsyncIterator[HybridPaymentStore]:
    """The payment service's hybrid store in dual_write with its relay, built as the service builds them; on
    leaving, the journal is empty: every write's copy has landed, as the relay of a running service sees to."""
    mode = TableMode("payments", Stage.DUAL_WRITE, fallback=True)
    hybrid = hybrid_table(
        "payments", lambda: mode, pool, HybridSettings(), settle=DEFAULT_SETTLE, index_read_kinds=INDEX_READ_KINDS
    )
    dynamo = DynamoPaymentRepository(client, table_name("payments"))
    store = HybridPaymentStore(hybrid, PostgresPaymentRepository(pool), PostgresPaymentRepository, dynamo)
    relay = Relay(hybrid.journal, store.replicate, idle_seconds=0.05)
    relaying = asyncio.create_task(relay.run())
    try:
        yield store
        await hybrid.wait_for_copies()

        async def journal_empty() -> bool:  # copies handed to the relay come due after a head start
            return not (await hybrid.journal.backlog()).pending

        await wait_for(journal_empty, 120, "the relay to copy every journaled write")
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying


async def write(pool: asyncpg.Pool, client: DynamoDBClient, writes: int) -> None:
    """`writes` writes, each to a key of its own: new payments and reversals of seeded (still settled) ones."""
    rows = await pool.fetch(
        "SELECT * FROM payment.payments WHERE status = 'SETTLED' ORDER BY random() LIMIT $1", writes - writes // 2
    )
    reversals = [payment_from_row(row) for row in rows]
    templates = reversals[:100]  # customers and loans for the new payments (the rows come in random order)
    work: asyncio.Queue[tuple[str, Payment]] = asyncio.Queue()
    for payment in reversals:
        work.put_nowait(("reverse", payment))
    now = datetime.now(UTC)
    for n in range(writes - len(reversals)):
        template = templates[n % len(templates)]
        fresh = dataclasses.replace(
            template,
            id=new_id(),
            status=PaymentStatus.SETTLED,
            paid_at=now,
            created_at=now,
            updated_at=now,
            version=1,
            idempotency_key=f"bench-incremental-{uuid.uuid4()}",
        )
        work.put_nowait(("create", fresh))
    async with dual_writing_store(pool, client) as store:

        async def writer() -> None:
            while not work.empty():
                kind, payment = work.get_nowait()
                if kind == "create":
                    await store.create(payment)
                else:
                    assert await store.update(payment.reversed_at(now), expected_version=payment.version)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def verify(pool: asyncpg.Pool, client: DynamoDBClient, incremental: bool) -> VerifySummary:
    specs = table_specs(["payments"], 4, timedelta(days=30))
    options = VerifyOptions(workers=4, incremental=incremental)
    [summary] = await run_verify(pool, client, specs, table_name, options)
    if not summary.clean:
        raise RuntimeError(f"{'incremental' if incremental else 'full'} verification found differences")
    return summary


async def run(payments: int, writes: int, rounds: int) -> str:
    async with local_stores(reachable_by_other_users=True) as (postgres, dynamodb):
        dsn, endpoint = postgres.dsn, dynamodb.endpoint
        end = datetime.now(UTC)
        await seed(dsn, SeedPlan(payments, 0, SEED_CUSTOMERS, SEED_DAYS, 7, seed=SEED_VALUE, end=end))
        await upgrade_migration_schema(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=40)
        config = AioConfig(max_pool_connections=64, user_agent=SDK_USER_AGENT)
        session = local_dynamodb_session()
        try:
            async with session.client("dynamodb", endpoint_url=endpoint, config=config) as client:
                await ensure_payment_table(client, table_name("payments"))
                modes = {"payments": TableMode("payments", Stage.DUAL_WRITE, True)}
                await ControlPlane(pool, guards=()).seed(modes, who="bench")
                specs = table_specs(["payments"], 4, timedelta(days=30))
                await run_backfill(pool, client, specs, table_name, BackfillOptions(workers=4))
                first = await verify(pool, client, incremental=False)
                print(f"chain start: full verification {first.rows_checked:,} rows in {first.seconds:.1f} s")
                full_seconds, incremental_seconds, keys, rows = [], [], [], []
                for round_no in range(rounds):
                    await write(pool, client, writes)
                    incremental = await verify(pool, client, incremental=True)
                    full = await verify(pool, client, incremental=False)
                    incremental_seconds.append(incremental.seconds)
                    full_seconds.append(full.seconds)
                    keys.append(incremental.keys_checked)
                    rows.append(full.rows_checked)
                    print(
                        f"round {round_no + 1}: incremental {incremental.keys_checked:,} keys in "
                        f"{incremental.seconds:.2f} s ({incremental.rechecked:,} rechecked), "
                        f"full {full.rows_checked:,} rows in {full.seconds:.1f} s",
                        flush=True,
                    )
        finally:
            await pool.close()
    full_median, incremental_median = statistics.median(full_seconds), statistics.median(incremental_seconds)
    return (
        f"{payments:,} payments seeded as `loanbook seed` seeds them (PostgreSQL), backfilled into DynamoDB Local and "
        f"verified in full once; then {rounds} round(s) of {writes:,} writes through the payment service's hybrid "
        "store in dual_write (half new payments, half reversals of seeded ones), each followed by an incremental "
        "and a full verification (`--workers 4`, unpaced). Median of the rounds.\n\n"
        "| verification | compared | seconds | per second |\n|---|---:|---:|---:|\n"
        f"| full | {statistics.median(rows):,.0f} rows | {full_median:.2f} | "
        f"{statistics.median(rows) / full_median:,.0f} rows/s |\n"
        f"| incremental | {statistics.median(keys):,.0f} written keys | {incremental_median:.2f} | "
        f"{statistics.median(keys) / incremental_median:,.0f} keys/s |\n\n"
        f"The incremental verification took {incremental_median / full_median:.1%} of the full one's time "
        f"({full_median / incremental_median:.0f}x faster)."
    )


app = command_line()


@app.command()
def main(
    payments: Annotated[int, sized_option("payments seeded", 20_000, 500_000, min=1000)],
    writes: Annotated[int, sized_option("writes between verifications", 1_000, 10_000, min=10)],
    rounds: Annotated[int, sized_option("rounds of writes and verifications", 1, 2, min=1)],
) -> None:
    """Incremental vs full verification after writes, on a seeded table."""
    run_and_report("incremental_verify", run(payments, writes, rounds))


if __name__ == "__main__":
    app()
