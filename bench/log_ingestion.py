"""Log ingestion through WriteLogs (batches of 500) against raw BatchWriteItem on the same DynamoDB Local, and
QueryLogs for one service over one hour with a million entries stored, on each back end.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.log_ingestion [--entries 1000000 --ingest-batches 200
--concurrency 4]`.
Targets (issue 5): WriteLogs throughput into DynamoDB at least 0.8x the raw BatchWriteItem throughput measured
in the same run with the same concurrency; QueryLogs p50 reported for both back ends.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import grpc
import typer
from aiobotocore.config import AioConfig

from bench.harness import (
    command_line,
    interleaved,
    local_dynamodb_session,
    local_stores,
    run_and_report,
    sized_option,
    wait_for,
)
from chassis.dynamodb_batches import BATCH_WRITE_LIMIT
from chassis.stores import SDK_USER_AGENT, keep_session_state
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from loanbook.logging.v1 import logging_pb2 as pb
from loanbook.logging.v1 import logging_pb2_grpc
from migration.control import ControlPlane
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.logging.adapters.dynamodb import LogTableLayout, ensure_log_table
from services.logging.adapters.postgres import LogPartitions, query_statement
from services.logging.domain import LogEntry, LogLevel
from services.logging.schema import upgrade_to_head as upgrade_logging_schema
from toolkit.seeding import IdSource, copy_logs, log_entries

TABLE_PREFIX = "bench"
BATCH = 500
# The service's DynamoLogRepository keeps this many BatchWriteItem calls in flight per WriteLogs batch; the raw
# contender gets the same number per caller, so both put the same load on DynamoDB Local.
WRITES_IN_FLIGHT_PER_BATCH = 8


@dataclass(frozen=True)
class Options:
    """The run's size and concurrency, from the command line."""

    entries: int
    services: int
    hours: int
    ingest_batches: int
    concurrency: int
    rounds: int
    iterations: int


def entries(
    rng: random.Random, services: list[str], start: datetime, span: timedelta, count: int
) -> Iterator[LogEntry]:
    """The seed command's entries, spread evenly over `span` from `start`: traced requests across `services`."""
    return log_entries(count, rng, IdSource(), start, start + span, services)


def as_message(entry: LogEntry) -> pb.LogEntry:
    message = pb.LogEntry(
        id=str(entry.id),
        service=entry.service,
        level=pb.LogLevel.ValueType(int(entry.level)),
        message=entry.message,
        attributes=entry.attributes,
        trace_id=entry.trace_id,
        span_id=entry.span_id,
    )
    message.time.FromDatetime(entry.time)
    return message


async def batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    """One BatchWriteItem of up to 25 items, with UnprocessedItems retried (DynamoDB Local never throttles)."""
    requests = [{"PutRequest": {"Item": item}} for item in items]
    while requests:
        response = await client.batch_write_item(RequestItems={table: requests})
        requests = response.get("UnprocessedItems", {}).get(table, [])


async def load_stores(
    dsn: str, client: Any, table: str, layout: LogTableLayout, stored: list[LogEntry]
) -> tuple[float, float]:
    """COPY into PostgreSQL (as `loanbook seed` loads history) and BatchWriteItem into DynamoDB."""
    started = time.perf_counter()
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    await copy_logs(pool, stored)
    await pool.close()
    pg_seconds = time.perf_counter() - started

    started = time.perf_counter()
    queue: asyncio.Queue[list[LogEntry]] = asyncio.Queue()
    for n in range(0, len(stored), BATCH_WRITE_LIMIT):
        queue.put_nowait(stored[n : n + BATCH_WRITE_LIMIT])

    async def writer() -> None:
        while not queue.empty():
            await batch_write(client, table, [layout.item(entry) for entry in queue.get_nowait()])

    await asyncio.gather(*(writer() for _ in range(16)))
    return pg_seconds, time.perf_counter() - started


def logging_env(dsn: str, dynamodb_endpoint: str, port: int) -> dict[str, str]:
    """The logging service on `port` against the bench table (8 shards), at WARNING, following stage changes
    within a second."""
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOANBOOK_LOGGING_GRPC_PORT": str(port),
        "LOANBOOK_LOGGING_POSTGRES_DSN": dsn,
        "LOANBOOK_LOGGING_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "LOANBOOK_LOGGING_DYNAMODB_TABLE_PREFIX": TABLE_PREFIX,
        "LOANBOOK_LOGGING_DYNAMODB_SHARDS": "8",
        "LOANBOOK_LOGGING_LOG_LEVEL": "WARNING",
        "LOANBOOK_LOGGING_POSTGRES_POOL_MAX_SIZE": "16",
        "LOANBOOK_LOGGING_MODE_POLL_SECONDS": "1",
        "OTEL_TRACES_EXPORTER": "none",
    }


async def run(args: Options) -> str:
    rng = random.Random(7)  # noqa: S311 - benchmark data
    services = [f"svc-{n:02d}" for n in range(args.services)]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    history_start = now - timedelta(hours=args.hours)
    stored = list(entries(rng, services, history_start, timedelta(hours=args.hours), args.entries))
    layout = LogTableLayout(shards=8)
    async with local_stores() as (postgres, dynamodb):
        dsn = postgres.dsn
        await upgrade_logging_schema(dsn)
        await upgrade_migration_schema(dsn)
        session = local_dynamodb_session()
        config = AioConfig(max_pool_connections=128, retries={"max_attempts": 2}, user_agent=SDK_USER_AGENT)
        async with session.client("dynamodb", endpoint_url=dynamodb.endpoint, config=config) as client:
            table = f"{TABLE_PREFIX}-logs"
            await ensure_log_table(client, table)
            # Released like the service releases its connections (chassis.stores): no reset query either side.
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=16, reset=keep_session_state)
            await LogPartitions(pool, 30).maintain()
            pg_seconds, ddb_seconds = await load_stores(dsn, client, table, layout, stored)
            loaded = f"PostgreSQL {pg_seconds:.1f}s, DynamoDB Local {ddb_seconds:.1f}s"
            print(f"loaded {len(stored):,} entries: {loaded}", flush=True)
            control = ControlPlane(pool, guards=())
            await control.seed({"logs": TableMode("logs", Stage.DUAL_WRITE, True)}, who="bench")
            port = free_port()
            env = logging_env(dsn, dynamodb.endpoint, port)
            service = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.logging", env=env)
            try:
                await wait_for(grpc_health(f"127.0.0.1:{port}"), 60, "logging service")
                report = await measure(args, control, pool, client, table, layout, port, services, now, rng)
            finally:
                service.send_signal(signal.SIGTERM)
                await service.wait()
                await pool.close()
    header = (
        f"Data: {len(stored):,} entries from {len(services)} services over the {args.hours} hours before the run "
        f"(about {len(stored) // len(services) // args.hours:,} per service and hour), 8 DynamoDB shards per "
        f"service-hour. Loaded into PostgreSQL in {pg_seconds:.1f} s (COPY, as `loanbook seed` does) and into "
        f"DynamoDB Local with BatchWriteItem (16 writers) in {ddb_seconds:.1f} s "
        f"({len(stored) / ddb_seconds:,.0f} items/s).\n"
        "The logging service runs as its own process (tracing on, exporter none). DynamoDB Local is functionally\n"
        "faithful but not a throughput or latency reference for DynamoDB.\n\n"
    )
    return header + report


async def measure(
    args: Options,
    control: ControlPlane,
    pool: asyncpg.Pool,
    client: Any,
    table: str,
    layout: LogTableLayout,
    port: int,
    services: list[str],
    now: datetime,
    rng: random.Random,
) -> str:
    async def switch(stage: Stage) -> None:
        await control.change("logs", stage=stage, fallback=True, who="bench")
        await asyncio.sleep(1.5)  # every replica follows within a notification; the poll is 1 s here

    sections: list[str] = []
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        stub = logging_pb2_grpc.LoggingServiceStub(channel)

        # --- ingestion ----------------------------------------------------------------------------------------
        ingest_service = "svc-ingest"

        def fresh_batches() -> list[list[LogEntry]]:
            start = datetime.now(UTC) - timedelta(minutes=30)
            made = list(entries(rng, [ingest_service], start, timedelta(minutes=20), args.ingest_batches * BATCH))
            return [made[n : n + BATCH] for n in range(0, len(made), BATCH)]

        async def via_grpc(batches: list[list[LogEntry]]) -> None:
            messages = [pb.WriteLogsRequest(entries=[as_message(e) for e in batch]) for batch in batches]
            pending = iter(messages)

            async def caller() -> None:
                for request in pending:
                    response = await stub.WriteLogs(request, timeout=60)
                    assert response.accepted_count == BATCH

            await asyncio.gather(*(caller() for _ in range(args.concurrency)))

        async def raw(batches: list[list[LogEntry]]) -> None:
            pending = iter(batches)
            slots = asyncio.Semaphore(args.concurrency * WRITES_IN_FLIGHT_PER_BATCH)

            async def chunk(items: list[dict[str, Any]]) -> None:
                async with slots:
                    await batch_write(client, table, items)

            async def caller() -> None:
                for batch in pending:
                    items = [layout.item(entry) for entry in batch]
                    await asyncio.gather(
                        *(chunk(items[n : n + BATCH_WRITE_LIMIT]) for n in range(0, len(items), BATCH_WRITE_LIMIT))
                    )

            await asyncio.gather(*(caller() for _ in range(args.concurrency)))

        async def timed(name: str, contender: Any) -> float:
            batches = fresh_batches()  # new ids every round: every write is a new item
            started = time.perf_counter()
            await contender(batches)
            rate = len(batches) * BATCH / (time.perf_counter() - started)
            print(f"  {name}: {rate:,.0f} entries/s", flush=True)
            return rate

        rates: dict[str, list[float]] = {}
        for stage in (Stage.DYNAMO_ONLY, Stage.DUAL_WRITE):
            await switch(stage)
            await via_grpc(fresh_batches()[:4])  # warm up the stage's paths
            raw_name, grpc_name = f"raw BatchWriteItem (beside {stage.value})", f"WriteLogs, stage {stage.value}"
            rates[raw_name], rates[grpc_name] = [], []
            for _ in range(args.rounds):  # alternate, so drift in the machine's load hits both alike
                rates[raw_name].append(await timed(raw_name, raw))
                rates[grpc_name].append(await timed(grpc_name, via_grpc))
        best = {name: max(values) for name, values in rates.items()}
        median = {name: sorted(values)[len(values) // 2] for name, values in rates.items()}
        ratio = median["WriteLogs, stage dynamo_only"] / median["raw BatchWriteItem (beside dynamo_only)"]
        sections += [
            "## Ingestion into DynamoDB",
            "",
            f"{args.ingest_batches} batches of {BATCH} entries per round, {args.concurrency} callers; raw "
            f"BatchWriteItem (25 items a request) with the same {args.concurrency * WRITES_IN_FLIGHT_PER_BATCH} "
            f"requests in flight as the service's {args.concurrency} x {WRITES_IN_FLIGHT_PER_BATCH}. "
            "Rounds alternate raw and WriteLogs.",
            "",
            "| path | rounds | median entries/s | best entries/s |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {len(values)} | {median[name]:,.0f} | {best[name]:,.0f} |"
                for name, values in rates.items()
            ),
            "",
            f"WriteLogs (dynamo_only) / raw BatchWriteItem, medians = **{ratio:.2f}x** "
            f"({'meets' if ratio >= 0.8 else 'MISSES'} the 0.8x target). dual_write also commits each batch and its "
            "journal entry in PostgreSQL before the inline DynamoDB copy.",
            "",
        ]

        # --- queries ------------------------------------------------------------------------------------------
        hour_start = now - timedelta(hours=args.hours // 2)
        hour = (hour_start, hour_start + timedelta(hours=1))
        picks = [rng.choice(services) for _ in range(args.iterations + 500)]

        async def query_grpc(i: int) -> object:
            request = pb.QueryLogsRequest(service=picks[i % len(picks)], page_size=50)
            request.from_time.FromDatetime(hour[0])
            request.to_time.FromDatetime(hour[1])
            response = await stub.QueryLogs(request, timeout=10)
            assert response.entries, "the hour queried holds entries of every service"
            return response

        async def raw_sql(i: int) -> object:
            return await pool.fetch(*query_statement(picks[i % len(picks)], *hour, LogLevel.DEBUG, None, 51))

        for stage, served_by in ((Stage.DUAL_WRITE, "PostgreSQL"), (Stage.DYNAMO_PRIMARY, "DynamoDB")):
            await switch(stage)
            contenders: dict[str, Callable[[int], Awaitable[object]]] = {
                f"QueryLogs via gRPC, stage {stage.value}": query_grpc
            }
            if stage is Stage.DUAL_WRITE:
                contenders["raw SQL (asyncpg), same statement"] = raw_sql
            latencies = await interleaved(contenders, args.iterations, warmup=100)
            sections += [
                f"## QueryLogs, one service over one hour, 50 newest, served by {served_by}",
                "",
                "| path | calls | p50 ms | p95 ms | p99 ms |",
                "| --- | --- | --- | --- | --- |",
                *(value.row() for value in latencies.values()),
                "",
            ]
        sections.append(
            f"On DynamoDB one page is {layout.shards} Queries (one per shard of the hour) run side by side and merged; "
            "on PostgreSQL it is one backward index range scan of one day's partition."
        )
    return "\n".join(sections)


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    entries: Annotated[int, sized_option("log entries stored in both back ends", 50_000, 1_000_000)],
    ingest_batches: Annotated[int, sized_option(f"batches of {BATCH} entries per ingestion round", 8, 40)],
    rounds: Annotated[int, sized_option("ingestion rounds of each contender per stage", 2, 3)],
    iterations: Annotated[int, sized_option("QueryLogs calls timed per back end", 300, 1000)],
    services: Annotated[int, typer.Option(help="services the stored entries come from")] = 20,
    hours: Annotated[int, typer.Option(help="hours before the run the stored entries span")] = 48,
    concurrency: Annotated[int, typer.Option(help="WriteLogs callers, and raw writers, in flight")] = 4,
) -> None:
    args = Options(entries, services, hours, ingest_batches, concurrency, rounds, iterations)
    run_and_report("log_ingestion", run(args))


if __name__ == "__main__":
    app()
