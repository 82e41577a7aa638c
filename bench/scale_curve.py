"""Scale curve: read latency on both back ends, backfill and verify rates, as payments and log entries grow.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.scale_curve [--payments 100000 --payments 1000000 ...]`.
Target: on every read path, p50 at the largest size at most 1.5x the p50 at the smallest (MET or MISSED per path).

The data grows in place: load the first size, measure, add up to the next size, measure again. Each size's
customers get about `--per-customer` payments each (new customers come with every increment), and log entries
arrive at `--per-service-hour` entries per service and hour (an increment adds older hours), so a customer's 50
newest payments and one service's hour stay the same size while the tables and their indexes grow.

PostgreSQL is loaded with COPY (`loanbook seed`'s loaders). DynamoDB Local is loaded by the toolkit's backfill
itself: each increment is also COPYed into a second, otherwise empty database, and backfilled from there into the
DynamoDB table that already holds the sizes before it, so the backfill rate is the increment's, at the table's
size. After each DynamoDB load, a full verify of the whole table (the served database against DynamoDB). DynamoDB
Local's write rate (about 3,000 items/s on 2 cores, two items per payment) bounds the DynamoDB-served sizes:
`--dynamodb-max-payments` and `--dynamodb-max-logs` say up to which size DynamoDB is loaded and measured.

Reads, through the payment and logging services as their own processes (gRPC, tracing on, exporter none), at
concurrency 1 (p50/p95/p99) and 32 (throughput): ListCustomerPayments (50 newest) and ListLoanPayments (50 newest)
with the stage at dual_write (PostgreSQL serves) and dynamo_primary (DynamoDB serves); QueryLogs for one service
over one hour (50 newest) likewise. The report goes beside a plot (matplotlib, PNG) of p50 against size.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import grpc
import typer

from bench.gateway_overhead import payment_env
from bench.harness import (
    Latencies,
    command_line,
    interleaved,
    local_stores,
    results_dir,
    run_and_report,
    sized_option,
    wait_for,
)
from bench.log_ingestion import logging_env
from bench.migration_backfill import dynamodb_client
from bench.payment_history import throughput
from chassis.stores import keep_session_state
from devstack.postgres import PostgresServer
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from loanbook.logging.v1 import logging_pb2, logging_pb2_grpc
from loanbook.payment.v1 import payment_pb2, payment_pb2_grpc
from migration.control import ControlPlane
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.logging.adapters.dynamodb import ensure_log_table
from services.logging.adapters.postgres import ensure_partitions
from services.payment.adapters.dynamodb import ensure_payment_table
from toolkit.backfill import BackfillOptions, run_backfill
from toolkit.seeding import IdSource, copy_logs, copy_payments, log_days, log_entries, payments, prepare_schemas
from toolkit.seeding import synthetic_loans as make_loans
from toolkit.specs import table_specs
from toolkit.verify import run_verify

NAME = "scale_curve"
TABLE_PREFIX = "bench"  # what the services' env (bench.gateway_overhead, bench.log_ingestion) points at
LOG_SHARDS = 8
RETENTION = timedelta(days=30)
INCREMENT_DATABASE = "bench_increment"
CHUNK = 100_000  # records generated and COPYed at a time: memory stays flat whatever the size
TARGET = 1.5  # p50 at the largest size over p50 at the smallest, per path
PAGE = 50
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """The sizes, the data's shape and the calls timed, from the command line."""

    payments: list[int]
    dynamodb_max_payments: int
    logs: list[int]
    dynamodb_max_logs: int
    per_customer: int
    per_service_hour: int
    services: int
    iterations: int


@dataclass(frozen=True)
class Point:
    """One read path measured at one size."""

    path: str
    size: int
    latencies: Latencies
    throughput: float


@dataclass(frozen=True)
class JobRate:
    """A backfill (of the increment) or a full verify (of the whole table), at the table's size after it."""

    job: str
    table: str
    size: int
    rows: int
    items: int
    seconds: float
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Verdict:
    path: str
    smallest: Point
    largest: Point

    @property
    def ratio(self) -> float:
        return self.largest.latencies.p50 / self.smallest.latencies.p50

    @property
    def met(self) -> bool:
        return self.ratio <= TARGET


def verdicts(points: Sequence[Point]) -> list[Verdict]:
    """Per path, its smallest and largest size against the target (a path measured at one size has no curve)."""
    by_path: dict[str, list[Point]] = {}
    for point in points:
        by_path.setdefault(point.path, []).append(point)
    return [
        Verdict(path, min(measured, key=lambda p: p.size), max(measured, key=lambda p: p.size))
        for path, measured in by_path.items()
        if len({p.size for p in measured}) > 1
    ]


def chunks(records: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# --- the stores and their growth --------------------------------------------------------------------------------


@dataclass
class Stores:
    """The served database, the increment database the backfill reads, DynamoDB, and the control planes."""

    served: asyncpg.Pool
    increment: asyncpg.Pool
    dynamodb: Any
    control: ControlPlane

    async def switch(self, table: str, stage: Stage) -> None:
        await self.control.change(table, stage=stage, fallback=True, who="bench")
        await asyncio.sleep(1.5)  # every replica follows within a notification; the poll is 1 s here


@dataclass
class Growth:
    """What is loaded so far, and the ids reads pick from."""

    rng: random.Random = field(default_factory=lambda: random.Random(21))  # noqa: S311 - benchmark data
    ids: IdSource = field(default_factory=IdSource)
    payments: int = 0
    customers: list[uuid.UUID] = field(default_factory=list)
    loans: list[uuid.UUID] = field(default_factory=list)
    logs: int = 0
    hours: int = 0  # of log history loaded, back from `now`
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(minute=0, second=0, microsecond=0))


async def add_payments(stores: Stores, growth: Growth, args: Options, size: int, to_dynamodb: bool) -> float:
    """COPY payments up to `size` into the served database (and the increment into the increment database when
    DynamoDB follows); new customers with them, `per_customer` payments each. Returns the seconds taken."""
    count = size - growth.payments
    started = time.perf_counter()
    year_end = datetime(2025, 1, 1, tzinfo=UTC)
    loans = make_loans(max(1, count // args.per_customer), growth.rng, growth.ids, year_end - timedelta(days=365))
    made = payments(loans, count, growth.rng, growth.ids, year_end - timedelta(days=365), year_end)
    for chunk in chunks(made, CHUNK):
        await copy_payments(stores.served, chunk)
        if to_dynamodb:
            await copy_payments(stores.increment, chunk)
    growth.customers += sorted({loan.customer_id for loan in loans})
    growth.loans += [loan.id for loan in loans]
    growth.payments = size
    return time.perf_counter() - started


async def add_logs(stores: Stores, growth: Growth, args: Options, size: int, to_dynamodb: bool) -> float:
    """COPY log entries up to `size`, as older hours before those loaded, `per_service_hour` per service and hour."""
    count = size - growth.logs
    hours = max(1, round(count / (args.per_service_hour * args.services)))
    end = growth.now - timedelta(hours=growth.hours)
    start = end - timedelta(hours=hours)
    started = time.perf_counter()
    services = [f"svc-{n:02d}" for n in range(args.services)]
    pools = [stores.served, stores.increment] if to_dynamodb else [stores.served]
    for pool in pools:
        await ensure_partitions(pool, log_days(start, end))
    for chunk in chunks(log_entries(count, growth.rng, growth.ids, start, end, services), CHUNK):
        for pool in pools:
            await copy_logs(pool, chunk)
    growth.logs, growth.hours = size, growth.hours + hours
    return time.perf_counter() - started


async def backfill_increment(stores: Stores, table: str, size: int) -> JobRate:
    """The toolkit's backfill of the increment database's rows into the DynamoDB table, then the increment cleared."""
    specs = table_specs([table], LOG_SHARDS, RETENTION)
    [summary] = await run_backfill(stores.increment, stores.dynamodb, specs, lambda name: f"{TABLE_PREFIX}-{name}")
    await stores.increment.execute({"payments": "TRUNCATE payment.payments", "logs": "TRUNCATE logging.entries"}[table])
    return JobRate("backfill", table, size, summary.rows, summary.items, summary.seconds, "the increment")


async def verify_table(stores: Stores, table: str, size: int) -> JobRate:
    specs = table_specs([table], LOG_SHARDS, RETENTION)
    [summary] = await run_verify(stores.served, stores.dynamodb, specs, lambda name: f"{TABLE_PREFIX}-{name}")
    note = "clean" if summary.clean else f"NOT CLEAN: {summary.difference_count} differences"
    return JobRate("verify", table, size, summary.rows_checked, summary.items_scanned, summary.seconds, note)


# --- reads ------------------------------------------------------------------------------------------------------


async def measure(calls: dict[str, Callable[[int], Awaitable[object]]], size: int, iterations: int) -> list[Point]:
    latencies = await interleaved(calls, iterations, warmup=min(200, iterations))  # services just started are slower
    points = []
    for name, call in calls.items():
        rate = await throughput(call, iterations, 32)
        points.append(Point(name, size, latencies[name], rate))
        print(f"  {name} at {size:,}: p50 {latencies[name].p50:.3f} ms, {rate:,.0f}/s at c=32", flush=True)
    return points


def payment_reads(
    channel: grpc.aio.Channel, growth: Growth, back_end: str, iterations: int
) -> dict[str, Callable[[int], Awaitable[object]]]:
    stub = payment_pb2_grpc.PaymentServiceStub(channel)
    rng = random.Random(len(growth.customers))  # noqa: S311
    customers = [str(rng.choice(growth.customers)) for _ in range(iterations * 3)]
    loans = [str(rng.choice(growth.loans)) for _ in range(iterations * 3)]

    async def customer_history(i: int) -> object:
        request = payment_pb2.ListCustomerPaymentsRequest(customer_id=customers[i % len(customers)], page_size=PAGE)
        response = await stub.ListCustomerPayments(request, timeout=10)
        assert response.payments, "every customer picked has payments"
        return response

    async def loan_payments(i: int) -> object:
        request = payment_pb2.ListLoanPaymentsRequest(loan_id=loans[i % len(loans)], page_size=PAGE)
        return await stub.ListLoanPayments(request, timeout=10)

    return {
        f"a customer's {PAGE} newest payments, {back_end}": customer_history,
        f"a loan's payments ({PAGE} newest), {back_end}": loan_payments,
    }


def log_queries(
    channel: grpc.aio.Channel, growth: Growth, args: Options, back_end: str, iterations: int
) -> dict[str, Callable[[int], Awaitable[object]]]:
    stub = logging_pb2_grpc.LoggingServiceStub(channel)
    rng = random.Random(growth.logs)  # noqa: S311
    picks = []
    for _ in range(iterations * 3):
        hour = growth.now - timedelta(hours=rng.randrange(1, growth.hours + 1))
        picks.append((f"svc-{rng.randrange(args.services):02d}", hour))

    async def query(i: int) -> object:
        service, hour = picks[i % len(picks)]
        request = logging_pb2.QueryLogsRequest(service=service, page_size=PAGE)
        request.from_time.FromDatetime(hour)
        request.to_time.FromDatetime(hour + timedelta(hours=1))
        response = await stub.QueryLogs(request, timeout=10)
        assert response.entries, "every service logged in every hour loaded"
        return response

    return {f"QueryLogs, one service, one hour, {back_end}": query}


# --- the run ----------------------------------------------------------------------------------------------------


@asynccontextmanager
async def service(module: str, env: dict[str, str], port: int) -> AsyncIterator[grpc.aio.Channel]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)
    try:
        await wait_for(grpc_health(f"127.0.0.1:{port}"), 60, module)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


async def prepare(dsn: str) -> None:
    await prepare_schemas(dsn)
    await upgrade_migration_schema(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        modes = {table: TableMode(table, Stage.DUAL_WRITE, True) for table in ("payments", "logs")}
        await ControlPlane(pool, guards=()).seed(modes, who="bench")  # the backfill wants dual writing
    finally:
        await pool.close()


async def increment_database(postgres: PostgresServer) -> str:
    """A second database on the same server, owned by the services' role; its DSN."""
    admin = await asyncpg.connect(postgres.admin_dsn)
    try:
        served = postgres.dsn.rsplit("/", 1)[1]
        owner = await admin.fetchval("SELECT datdba::regrole::text FROM pg_database WHERE datname = $1", served)
        await admin.execute(f'CREATE DATABASE {INCREMENT_DATABASE} OWNER "{owner}"')
    finally:
        await admin.close()
    return f"{postgres.dsn.rsplit('/', 1)[0]}/{INCREMENT_DATABASE}"


async def run(args: Options) -> str:
    async with local_stores() as (postgres, dynamodb):
        increment_dsn = await increment_database(postgres)
        for dsn in (postgres.dsn, increment_dsn):
            await prepare(dsn)
        served = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=12, reset=keep_session_state)
        workers = BackfillOptions.workers
        increment = await asyncpg.create_pool(increment_dsn, min_size=1, max_size=2 * workers + 2)
        try:
            async with dynamodb_client(dynamodb.endpoint, workers * BackfillOptions.write_concurrency) as client:
                await ensure_payment_table(client, f"{TABLE_PREFIX}-payments")
                await ensure_log_table(client, f"{TABLE_PREFIX}-logs")
                stores = Stores(served, increment, client, ControlPlane(served, guards=()))
                payment_port, logging_port = free_port(), free_port()
                common = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "LOANBOOK_PAYMENT_MODE_POLL_SECONDS": "1"}
                payment_process_env = payment_env(postgres.dsn, dynamodb.endpoint, payment_port, common)
                logging_process_env = logging_env(postgres.dsn, dynamodb.endpoint, logging_port)
                async with (
                    service("services.payment", payment_process_env, payment_port) as payment_channel,
                    service("services.logging", logging_process_env, logging_port) as logging_channel,
                ):
                    points, rates, loads = await grow_and_measure(args, stores, payment_channel, logging_channel)
        finally:
            await served.close()
            await increment.close()
    return report(args, points, rates, loads)


async def grow_and_measure(
    args: Options, stores: Stores, payment_channel: grpc.aio.Channel, logging_channel: grpc.aio.Channel
) -> tuple[list[Point], list[JobRate], list[str]]:
    growth = Growth()
    points: list[Point] = []
    rates: list[JobRate] = []
    loads: list[str] = []
    for size in sorted(set(args.payments)):
        to_dynamodb = size <= args.dynamodb_max_payments
        seconds = await add_payments(stores, growth, args, size, to_dynamodb)
        loads.append(f"payments to {size:,}: COPY {seconds:.1f} s")
        print(f"payments: {size:,} in PostgreSQL ({seconds:.1f} s)", flush=True)
        if to_dynamodb:
            rates.append(await backfill_increment(stores, "payments", size))
            print(f"  backfill: {rates[-1].items_per_second:,.0f} items/s", flush=True)
        await stores.switch("payments", Stage.DUAL_WRITE)
        points += await measure(
            payment_reads(payment_channel, growth, "PostgreSQL", args.iterations), size, args.iterations
        )
        if to_dynamodb:
            await stores.switch("payments", Stage.DYNAMO_PRIMARY)
            calls = payment_reads(payment_channel, growth, "DynamoDB", args.iterations)
            points += await measure(calls, size, args.iterations)
            await stores.switch("payments", Stage.DUAL_WRITE)
            rates.append(await verify_table(stores, "payments", size))
            print(f"  verify: {rates[-1].rows_per_second:,.0f} rows/s, {rates[-1].note}", flush=True)
    for size in sorted(set(args.logs)):
        to_dynamodb = size <= args.dynamodb_max_logs
        seconds = await add_logs(stores, growth, args, size, to_dynamodb)
        loads.append(f"log entries to {size:,} ({growth.hours} hours): COPY {seconds:.1f} s")
        print(f"logs: {size:,} in PostgreSQL over {growth.hours} hours ({seconds:.1f} s)", flush=True)
        if to_dynamodb:
            rates.append(await backfill_increment(stores, "logs", size))
            print(f"  backfill: {rates[-1].items_per_second:,.0f} items/s", flush=True)
        await stores.switch("logs", Stage.DUAL_WRITE)
        points += await measure(
            log_queries(logging_channel, growth, args, "PostgreSQL", args.iterations), size, args.iterations
        )
        if to_dynamodb:
            await stores.switch("logs", Stage.DYNAMO_PRIMARY)
            calls = log_queries(logging_channel, growth, args, "DynamoDB", args.iterations)
            points += await measure(calls, size, args.iterations)
            await stores.switch("logs", Stage.DUAL_WRITE)
            rates.append(await verify_table(stores, "logs", size))
            print(f"  verify: {rates[-1].rows_per_second:,.0f} rows/s, {rates[-1].note}", flush=True)
    return points, rates, loads


# --- the report and the plot ------------------------------------------------------------------------------------


def plot(points: Sequence[Point], rates: Sequence[JobRate], path: Path) -> Path:
    """p50 against size per path (payments and logs side by side), and the jobs' rates, log-scale sizes; a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the figure goes straight to a file
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 3, figsize=(18, 5.5))
    panels = (
        (axes[0], [p for p in points if "QueryLogs" not in p.path], "payments stored"),
        (axes[1], [p for p in points if "QueryLogs" in p.path], "log entries stored"),
    )
    for axis, measured, unit in panels:
        for name in dict.fromkeys(p.path for p in measured):
            curve = sorted((p for p in measured if p.path == name), key=lambda p: p.size)
            axis.plot([p.size for p in curve], [p.latencies.p50 for p in curve], marker="o", label=name)
        axis.set(xscale="log", xlabel=unit, ylabel="p50 ms (concurrency 1)", ylim=(0, None))
        axis.grid(True, which="both", alpha=0.3)
        if measured:
            axis.legend(fontsize="small")
    for key in dict.fromkeys((r.job, r.table) for r in rates):
        jobs = sorted((r for r in rates if (r.job, r.table) == key), key=lambda r: r.size)
        label = f"{key[0]} {key[1]} ({'items' if key[0] == 'backfill' else 'rows'}/s)"
        values = [r.items_per_second if key[0] == "backfill" else r.rows_per_second for r in jobs]
        axes[2].plot([r.size for r in jobs], values, marker="s", label=label)
    axes[2].set(xscale="log", xlabel="rows in the table after the job", ylabel="per second", ylim=(0, None))
    axes[2].grid(True, which="both", alpha=0.3)
    if rates:
        axes[2].legend(fontsize="small")
    figure.suptitle(f"loanbook scale curve (target: p50 at the largest size <= {TARGET}x the smallest)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def report(args: Options, points: Sequence[Point], rates: Sequence[JobRate], loads: Sequence[str]) -> str:
    picture = plot(points, rates, results_dir() / f"{NAME}.png")
    lines = [
        f"Sizes: payments {', '.join(f'{n:,}' for n in sorted(set(args.payments)))} (DynamoDB up to "
        f"{args.dynamodb_max_payments:,}), about {args.per_customer} per customer; log entries "
        f"{', '.join(f'{n:,}' for n in sorted(set(args.logs)))} (DynamoDB up to {args.dynamodb_max_logs:,}), about "
        f"{args.per_service_hour:,} per service and hour from {args.services} services. The data grew in place.",
        "DynamoDB Local's write rate bounds the DynamoDB sizes; it is functionally faithful but not a latency or",
        "throughput reference for DynamoDB. Loads: " + "; ".join(loads) + ".",
        "",
        f"![p50 against size]({picture.name})",
        "",
        "## Reads",
        "",
        f"{args.iterations} calls a path and size at concurrency 1 (interleaved), as many at concurrency 32.",
        "",
        "| path | size | calls | p50 ms | p95 ms | p99 ms | calls/s at c=32 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {p.path} | {p.size:,} | {len(p.latencies.seconds)} | {p.latencies.p50:.3f} | "
            f"{p.latencies.percentile(95):.3f} | {p.latencies.percentile(99):.3f} | {p.throughput:,.0f} |"
            for p in sorted(points, key=lambda p: (p.path, p.size))
        ),
        "",
        f"## Target: p50 at the largest size at most {TARGET}x the smallest",
        "",
        "| path | smallest | p50 ms | largest | p50 ms | ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {v.path} | {v.smallest.size:,} | {v.smallest.latencies.p50:.3f} | {v.largest.size:,} | "
            f"{v.largest.latencies.p50:.3f} | {v.ratio:.2f}x | **{'MET' if v.met else 'MISSED'}** |"
            for v in verdicts(points)
        ),
        "",
        "## Backfill and verify rates",
        "",
        "Backfill: the toolkit's backfill (4 workers, 4 BatchWriteItem calls each) of the increment, into the table",
        "holding the sizes before it. Verify: a full verify of the whole table, PostgreSQL against DynamoDB.",
        "",
        "| job | table | rows after | rows | items | seconds | rows/s | items/s | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r.job} | {r.table} | {r.size:,} | {r.rows:,} | {r.items:,} | {r.seconds:.1f} | "
            f"{r.rows_per_second:,.0f} | {r.items_per_second:,.0f} | {r.note} |"
            for r in rates
        ),
    ]
    for verdict in verdicts(points):
        print(f"{'MET' if verdict.met else 'MISSED'}: {verdict.path}: {verdict.ratio:.2f}x", flush=True)
    return "\n".join(lines)


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[
        list[int],
        sized_option("payments stored at each size (repeat)", [10_000, 40_000], [100_000, 1_000_000, 3_000_000]),
    ],
    dynamodb_max_payments: Annotated[
        int, sized_option("load DynamoDB and measure it up to this many payments", 40_000, 1_000_000)
    ],
    logs: Annotated[
        list[int], sized_option("log entries stored at each size (repeat)", [20_000, 80_000], [1_000_000, 10_000_000])
    ],
    dynamodb_max_logs: Annotated[
        int, sized_option("load DynamoDB and measure it up to this many log entries", 80_000, 1_000_000)
    ],
    iterations: Annotated[int, sized_option("calls timed a path and size", 200, 1000)],
    per_service_hour: Annotated[int, sized_option("log entries per service and hour at every size", 50, 1000, min=1)],
    per_customer: Annotated[int, typer.Option(help="payments per customer at every size", min=1)] = 50,
    services: Annotated[int, typer.Option(help="services the log entries come from", min=1)] = 20,
) -> None:
    args = Options(
        payments, dynamodb_max_payments, logs, dynamodb_max_logs, per_customer, per_service_hour, services, iterations
    )
    run_and_report(NAME, run(args))


if __name__ == "__main__":
    app()
