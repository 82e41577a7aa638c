"""Backfill of seeded history into DynamoDB Local next to the endpoint's raw BatchWriteItem ceiling; verify speed.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.migration_backfill [--payments 500000 --logs 1000000]` (the quick
size: 20k payments and 40k log entries). Targets (issue 7): backfill items/s at least 0.85x the raw BatchWriteItem
ceiling measured on the same endpoint at the same concurrency in the same run; verify at least 20k rows/s; backfill
peak RSS under 500 MB. The verify rate is reported next to the endpoint's raw Scan ceiling (the same tables scanned
with the same segments in flight, items counted and nothing else), since DynamoDB Local caps what any verify can
read.

The backfill and the verify each run in a child process (`--child backfill|verify`), so their peak memory is
their own: the child reports its VmHWM (the peak RSS of its own image since exec; not ru_maxrss, which Linux
carries over from the parent across fork and execve, so it showed the parent's RSS after seeding), and the parent
polls /proc/<pid>/status as a cross-check.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import asyncpg
import typer
from aiobotocore.config import AioConfig

from bench.harness import command_line, local_dynamodb_session, local_stores, run_and_report, sized, sized_option
from chassis.dynamodb_wire import scan_page
from chassis.stores import SDK_USER_AGENT
from migration.control import ControlPlane
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from migration.table_spec import Item
from services.logging.adapters.dynamodb import LogTableLayout, ensure_log_table
from services.payment.adapters.dynamodb import ensure_payment_table, marker_item, payment_item
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.seeding import IdSource, SeedPlan, log_entries, payments, seed, synthetic_loans
from toolkit.specs import table_specs
from toolkit.verify import VerifyOptions, run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

PREFIX = "bench"
TABLES = ("payments", "logs")
LOG_SHARDS = 8
RETENTION = timedelta(days=30)
WRITE_BATCH = 25
QUICK_PAYMENTS, FULL_PAYMENTS = 20_000, 500_000
Batch = tuple[str, list[Item]]  # (DynamoDB table, up to 25 items)
ChildKind = Literal["backfill", "verify"]


@dataclass(frozen=True)
class Options:
    """The run's size and concurrency, from the command line; a child also gets its kind and the stores."""

    payments: int
    logs: int
    customers: int
    ceiling_items: int
    workers: int
    write_concurrency: int
    child: ChildKind | None
    dsn: str
    endpoint: str


def dynamodb_client(endpoint: str, concurrency: int) -> Any:
    """The same client settings for the raw writers and the engine, so neither gets more connections."""
    session = local_dynamodb_session()
    config = AioConfig(
        max_pool_connections=max(10, concurrency * 2),
        retries={"max_attempts": 3, "mode": "standard"},
        user_agent=SDK_USER_AGENT,
    )
    return session.client("dynamodb", endpoint_url=endpoint, config=config)


def in_flight(args: Options) -> int:
    """BatchWriteItem calls the backfill can have in flight: per table, workers x calls per worker."""
    return len(TABLES) * int(args.workers) * int(args.write_concurrency)


# --- the raw ceiling -------------------------------------------------------------------------------------------


def ceiling_batches(count: int, payment_share: float, rng: random.Random, scratch: str) -> Iterator[Batch]:
    """About `count` items of the backfill's shapes (payment + idempotency marker, sharded log entry), 25 a request,
    payments and logs interleaved in the backfill's proportion."""
    ids, end = IdSource(), datetime.now(UTC)
    loans = synthetic_loans(200, rng, ids, end - timedelta(days=365))
    payment_rows = round(count * payment_share / 2)
    made = payments(loans, payment_rows, rng, ids, end - timedelta(days=365), end)
    logged = log_entries(count - payment_rows * 2, rng, ids, end - timedelta(days=6), end)
    layout = LogTableLayout(shards=LOG_SHARDS, retention=RETENTION)
    payment_items = (item for p in made for item in (payment_item(p), marker_item(p)))
    log_items = (layout.item(entry) for entry in logged)
    sources = {f"{scratch}-payments": payment_items, f"{scratch}-logs": log_items}
    while sources:
        for table, source in list(sources.items()):
            # Payments take their share of requests: with a 1/3 share, one payment request per two log requests.
            share = payment_share if table.endswith("payments") else 1 - payment_share
            for _ in range(max(1, round(share * 4))):
                batch = [item for _, item in zip(range(WRITE_BATCH), source, strict=False)]
                if not batch:
                    del sources[table]
                    break
                yield table, batch


async def raw_ceiling(client: DynamoDBClient, writers: int, batches: list[Batch]) -> float:
    """Items/s of `writers` concurrent writers, each sending 25-item BatchWriteItem requests back to back."""
    pending = iter(batches)

    async def writer() -> None:
        for table, items in pending:
            requests: Any = [{"PutRequest": {"Item": item}} for item in items]
            while requests:
                response = await client.batch_write_item(RequestItems={table: requests})
                requests = response.get("UnprocessedItems", {}).get(table, [])

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return sum(len(items) for _, items in batches) / (time.perf_counter() - started)


async def raw_scan_ceiling(client: DynamoDBClient, tables: list[str], segments: int) -> tuple[int, float]:
    """Items and items/s of a full parallel Scan of `tables` side by side, `segments` segments each, as the
    verify's Scan stream reads them (strongly consistent, items left as the wire's JSON) but doing nothing else."""
    scanned = 0

    async def segment(table: str, number: int) -> None:
        nonlocal scanned
        request: Any = {
            "TableName": table,
            "Segment": number,
            "TotalSegments": segments,
            "ConsistentRead": True,
            "Limit": VerifyOptions.scan_page_items,
        }
        while True:
            response = await scan_page(client, request)
            scanned += len(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    started = time.perf_counter()
    await asyncio.gather(*(segment(table, number) for table in tables for number in range(segments)))
    return scanned, scanned / (time.perf_counter() - started)


# --- children: the engine under measurement ---------------------------------------------------------------------


async def child(args: Options) -> dict[str, Any]:
    specs = table_specs(list(TABLES), LOG_SHARDS, RETENTION)
    pool = await asyncpg.create_pool(args.dsn, min_size=2, max_size=len(TABLES) * (2 * args.workers + 2))
    try:
        async with dynamodb_client(args.endpoint, in_flight(args)) as client:
            started = time.perf_counter()
            if args.child == "backfill":
                options = BackfillOptions(workers=args.workers, write_concurrency=args.write_concurrency)
                backfilled = await run_backfill(pool, client, specs, lambda table: f"{PREFIX}-{table}", options)
                result: dict[str, Any] = {
                    "rows": sum(s.rows for s in backfilled),
                    "items": sum(s.items for s in backfilled),
                    "tables": {s.table: {"rows": s.rows, "items": s.items, "seconds": s.seconds} for s in backfilled},
                }
            else:
                verified = await run_verify(
                    pool, client, specs, lambda table: f"{PREFIX}-{table}", VerifyOptions(workers=args.workers)
                )
                result = {
                    "rows": sum(s.rows_checked for s in verified),
                    "clean": all(s.clean for s in verified),
                    "items_scanned": sum(s.items_scanned for s in verified),
                    "tables": {
                        s.table: {
                            "rows": s.rows_checked,
                            "items_checked": s.items_checked,
                            "items_scanned": s.items_scanned,
                            "differences": s.difference_count,
                            "seconds": s.seconds,
                        }
                        for s in verified
                    },
                }
            result["seconds"] = time.perf_counter() - started
    finally:
        await pool.close()
    result["max_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """VmHWM of this process: its peak RSS since exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kilobytes
    raise RuntimeError("no VmHWM in /proc/self/status")


@dataclass
class ChildRun:
    result: dict[str, Any]
    polled_peak_mb: float


async def run_child(kind: str, args: Options, dsn: str, endpoint: str) -> ChildRun:
    command = [
        sys.executable,
        "-m",
        "bench.migration_backfill",
        "--child",
        kind,
        "--dsn",
        dsn,
        "--endpoint",
        endpoint,
        "--workers",
        str(args.workers),
        "--write-concurrency",
        str(args.write_concurrency),
    ]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    peak = 0.0

    async def poll() -> None:
        nonlocal peak
        status = Path(f"/proc/{process.pid}/status")
        while True:
            try:
                # A few hundred bytes from procfs: never blocks long enough to matter.
                for line in status.read_text().splitlines():  # noqa: ASYNC240
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
            except (FileNotFoundError, ProcessLookupError):
                return
            await asyncio.sleep(0.2)

    poller = asyncio.create_task(poll())
    output, _ = await process.communicate()
    poller.cancel()
    if process.returncode != 0:
        raise RuntimeError(f"the {kind} child failed with exit code {process.returncode}")
    return ChildRun(json.loads(output.decode().strip().splitlines()[-1]), peak)


# --- the run ----------------------------------------------------------------------------------------------------


@asynccontextmanager
async def stores() -> AsyncIterator[tuple[str, str]]:
    async with local_stores(reachable_by_other_users=True) as (postgres, dynamodb):
        yield postgres.dsn, dynamodb.endpoint


async def run(args: Options) -> str:
    async with stores() as (dsn, endpoint):
        started = time.perf_counter()
        plan = SeedPlan(args.payments, args.logs, args.customers, 365, 6, seed=11, end=datetime.now(UTC))
        seeded = await seed(dsn, plan)
        seed_seconds = time.perf_counter() - started
        print(
            f"seeded {seeded.payments:,} payments and {seeded.logs:,} log entries in {seed_seconds:.1f} s", flush=True
        )
        await upgrade_migration_schema(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        modes = {table: TableMode(table, Stage.DUAL_WRITE, True) for table in TABLES}
        await ControlPlane(pool, guards=()).seed(modes, who="bench")
        await pool.close()

        writers = in_flight(args)
        payment_share = 2 * args.payments / (2 * args.payments + args.logs)  # two items per payment row
        rng = random.Random(13)  # noqa: S311 - benchmark data
        ceilings: list[float] = []
        async with dynamodb_client(endpoint, writers) as client:
            await ensure_payment_table(client, f"{PREFIX}-payments")
            await ensure_log_table(client, f"{PREFIX}-logs")
            await ensure_payment_table(client, "scratch-payments")
            await ensure_log_table(client, "scratch-logs")

            async def ceiling_round(label: str) -> None:
                batches = list(ceiling_batches(args.ceiling_items, payment_share, rng, "scratch"))
                rate = await raw_ceiling(client, writers, batches)
                ceilings.append(rate)
                print(f"raw BatchWriteItem ceiling ({label}): {rate:,.0f} items/s", flush=True)

            await ceiling_round("before the backfill")
            backfill = await run_child("backfill", args, dsn, endpoint)
            backfill_rate = backfill.result["items"] / backfill.result["seconds"]
            print(
                f"backfill: {backfill.result['items']:,} items in {backfill.result['seconds']:.1f} s "
                f"({backfill_rate:,.0f} items/s), peak RSS {backfill.result['max_rss_mb']:.0f} MB",
                flush=True,
            )
            await ceiling_round("after the backfill")
            segments = args.workers * VerifyOptions.segments_per_worker
            bench_tables = [f"{PREFIX}-{table}" for table in TABLES]
            scan_ceilings = [await raw_scan_ceiling(client, bench_tables, segments)]
            print(f"raw Scan ceiling (before the verify): {scan_ceilings[0][1]:,.0f} items/s", flush=True)
            verify = await run_child("verify", args, dsn, endpoint)
            scan_ceilings.append(await raw_scan_ceiling(client, bench_tables, segments))
            print(f"raw Scan ceiling (after the verify): {scan_ceilings[1][1]:,.0f} items/s", flush=True)
        verify_rate = verify.result["rows"] / verify.result["seconds"]
        verify_items_rate = verify.result["items_scanned"] / verify.result["seconds"]
        print(
            f"verify: {verify.result['rows']:,} rows in {verify.result['seconds']:.1f} s "
            f"({verify_rate:,.0f} rows/s, {verify_items_rate:,.0f} DynamoDB items/s), "
            f"clean {verify.result['clean']}",
            flush=True,
        )

    ceiling = sum(ceilings) / len(ceilings)
    ratio = backfill_rate / ceiling
    peak = max(backfill.result["max_rss_mb"], backfill.polled_peak_mb)
    verdict = {True: "meets", False: "MISSES"}
    table_rows = "\n".join(
        f"| {name} | {t['rows']:,} | {t['items']:,} | {t['seconds']:.1f} | {t['items'] / t['seconds']:,.0f} |"
        for name, t in backfill.result["tables"].items()
    )
    verify_rows = "\n".join(
        f"| {name} | {t['rows']:,} | {t['items_checked']:,} | {t['items_scanned']:,} | {t['differences']} | "
        f"{t['seconds']:.1f} | {t['rows'] / t['seconds']:,.0f} |"
        for name, t in verify.result["tables"].items()
    )
    scan_ceiling = sum(rate for _, rate in scan_ceilings) / len(scan_ceilings)
    scan_ratio = verify_items_rate / scan_ceiling
    return f"""Data: {args.payments:,} payments (two items each: the payment and its idempotency marker) over
{args.customers:,} customers' funded loans and {args.logs:,} log entries over 6 days, seeded into PostgreSQL with
`loanbook seed`'s module in {seed_seconds:.1f} s ({(args.payments + args.logs) / seed_seconds:,.0f} rows/s).
DynamoDB Local is functionally faithful but not a throughput reference for DynamoDB; what counts is the ratio.

## Backfill against the raw BatchWriteItem ceiling

Concurrency: {args.workers} workers per table x {args.write_concurrency} BatchWriteItem calls per worker x
{len(TABLES)} tables = **{writers}** requests in flight at most. The ceiling is {writers} writers sending 25-item
BatchWriteItem requests back to back (no PostgreSQL reads, no checkpoints) with the same item shapes and the same
payments/logs mix, into scratch tables on the same endpoint: {args.ceiling_items:,} items a round, one round before
and one after the backfill (the tables are bigger by then).

| raw ceiling round | items/s |
| --- | --- |
| before the backfill | {ceilings[0]:,.0f} |
| after the backfill | {ceilings[1]:,.0f} |
| mean | {ceiling:,.0f} |

| backfill table | rows | items | seconds | items/s |
| --- | --- | --- | --- | --- |
{table_rows}

Backfill (both tables side by side, one process): {backfill.result["items"]:,} items in
{backfill.result["seconds"]:.1f} s = **{backfill_rate:,.0f} items/s = {ratio:.2f}x the ceiling**
({verdict[ratio >= 0.85]} the 0.85x target).

Peak RSS of the backfill process: **{peak:.0f} MB** (VmHWM {backfill.result["max_rss_mb"]:.0f} MB, polled
VmRSS {backfill.polled_peak_mb:.0f} MB; {verdict[peak < 500]} the 500 MB target).

## Verify

A full verification: PostgreSQL's rows (keyset ranges, {args.workers} at a time, mapped by the adapters' item
functions) and a parallel Scan of DynamoDB ({args.workers} x {VerifyOptions.segments_per_worker} = {segments}
segments per table, pages of {VerifyOptions.scan_page_items:,} items) each reduced to (key, digest), loaded by COPY
into temporary tables and compared with one FULL OUTER JOIN; differing keys are re-read for the report.

| table | PostgreSQL rows | their items | DynamoDB items scanned | differences | seconds | rows/s |
| --- | --- | --- | --- | --- | --- | --- |
{verify_rows}

Both tables side by side: {verify.result["rows"]:,} rows ({verify.result["items_scanned"]:,} DynamoDB items) in
{verify.result["seconds"]:.1f} s = **{verify_rate:,.0f} rows/s** ({verdict[verify_rate >= 20_000]} the 20k rows/s
target), clean: {verify.result["clean"]}. Peak RSS of the verify process: {
        max(verify.result["max_rss_mb"], verify.polled_peak_mb):.0f} MB.

The endpoint's raw Scan ceiling: the same two tables scanned side by side with the same {segments} segments each,
strongly consistent, pages of {VerifyOptions.scan_page_items:,} items, items counted and nothing else (no digests,
no PostgreSQL), once before and once after the verify: {scan_ceilings[0][0]:,} items at
{scan_ceilings[0][1]:,.0f} and {scan_ceilings[1][1]:,.0f} items/s, mean **{scan_ceiling:,.0f} items/s**. The verify
read DynamoDB at {verify_items_rate:,.0f} items/s = **{scan_ratio:.2f}x that ceiling**: a verify of this data cannot
be faster than {scan_ceiling * verify.result["rows"] / max(1, verify.result["items_scanned"]):,.0f} rows/s on this
endpoint.
"""


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[int, sized_option("payments seeded into PostgreSQL", QUICK_PAYMENTS, FULL_PAYMENTS)],
    logs: Annotated[int, sized_option("log entries seeded into PostgreSQL", 40_000, 1_000_000)],
    customers: Annotated[int, sized_option("customers the payments belong to", 2_000, 10_000)],
    ceiling_items: Annotated[int, typer.Option(show_default=False, help="items per ceiling round (default: 10 %)")] = 0,
    workers: Annotated[int, typer.Option(help="backfill and verify workers per table")] = BackfillOptions.workers,
    write_concurrency: Annotated[
        int, typer.Option(help="BatchWriteItem calls in flight per backfill worker")
    ] = BackfillOptions.write_concurrency,
    child_kind: Annotated[ChildKind | None, typer.Option("--child", hidden=True)] = None,
    dsn: Annotated[str, typer.Option(hidden=True)] = "",
    endpoint: Annotated[str, typer.Option(hidden=True)] = "",
) -> None:
    args = Options(payments, logs, customers, ceiling_items, workers, write_concurrency, child_kind, dsn, endpoint)
    if args.child:
        print(json.dumps(asyncio.run(child(args))))
        return
    args = replace(args, ceiling_items=args.ceiling_items or max(10_000, (2 * args.payments + args.logs) // 10))
    # Another size than the default keeps its own file, so it does not pass for the default size's figures.
    default = sized(QUICK_PAYMENTS, FULL_PAYMENTS)
    name = "migration_backfill" if args.payments == default else f"migration_backfill_{args.payments // 1000}k"
    run_and_report(name, run(args))


if __name__ == "__main__":
    app()
