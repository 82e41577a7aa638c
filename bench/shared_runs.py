"""Backfill and full verify of one run by one process and by two processes sharing it, side by side in one run.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.shared_runs [--payments 200000 --rounds 2]`. Each round backfills
the seeded payments into an empty DynamoDB table with one `loanbook migrate backfill` process, then again (table
emptied) with two processes started together on the same run, and verifies with one and with two `loanbook migrate
verify` processes. Wall-clock time from the processes' start to the last one's exit (each pays its interpreter
start, as an operator's pods would). On a 2-core machine DynamoDB Local's JVM shares the cores with the processes:
what a second process adds here is a lower bound of what a second node adds."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
import typer

from bench.harness import command_line, local_dynamodb_session, local_stores, run_and_report, sized_option
from migration.control import ControlPlane
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.payment.adapters.dynamodb import ensure_payment_table
from toolkit.seeding import SeedPlan, seed

PREFIX = "bench"
TABLE = f"{PREFIX}-payments"


def toolkit_env(dsn: str, endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOANBOOK_MIGRATION_POSTGRES_DSN": dsn,
        "LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT": endpoint,
        "LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX": PREFIX,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # DynamoDB Local takes any credentials
        "OTEL_SDK_DISABLED": "true",
    }


async def processes(env: dict[str, str], count: int, *args: str) -> float:
    """Seconds from starting `count` identical `loanbook` processes to the last one's successful exit."""
    started = time.perf_counter()
    running = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "toolkit",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(count)
    ]
    outputs = await asyncio.gather(*(process.communicate() for process in running))
    seconds = time.perf_counter() - started
    for process, (out, _) in zip(running, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"loanbook {' '.join(args)} failed:\n{out.decode()}")
    return seconds


async def empty_table(endpoint: str) -> None:
    async with local_dynamodb_session().client("dynamodb", endpoint_url=endpoint) as client:
        try:
            await client.delete_table(TableName=TABLE)
            await client.get_waiter("table_not_exists").wait(TableName=TABLE)
        except client.exceptions.ResourceNotFoundException:
            pass
        await ensure_payment_table(client, TABLE)


async def run(payments: int, rounds: int, workers: int) -> str:
    async with local_stores(reachable_by_other_users=True) as (postgres, dynamodb):
        dsn, endpoint = postgres.dsn, dynamodb.endpoint
        plan = SeedPlan(payments, 0, max(1, payments // 50), 365, 6, seed=11, end=datetime.now(UTC))
        await seed(dsn, plan)
        await upgrade_migration_schema(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        await ControlPlane(pool, guards=()).seed({"payments": TableMode("payments", Stage.DUAL_WRITE, True)}, who="b")
        await pool.close()
        env = toolkit_env(dsn, endpoint)
        backfill = ("migrate", "backfill", "payments", "--workers", str(workers))
        verify = ("migrate", "verify", "payments", "--workers", str(workers), "--rate-limit", "1000000")
        seconds: dict[tuple[str, int], list[float]] = {}
        for round_no in range(rounds):
            for count in (1, 2) if round_no % 2 == 0 else (2, 1):  # alternate which goes first
                await empty_table(endpoint)
                seconds.setdefault(("backfill", count), []).append(await processes(env, count, *backfill))
                seconds.setdefault(("verify", count), []).append(await processes(env, count, *verify))
                print(f"round {round_no + 1}, {count} process(es): " + ", ".join(
                    f"{job} {seconds[(job, count)][-1]:.1f} s" for job in ("backfill", "verify")
                ), flush=True)  # fmt: skip
    rows = []
    for job in ("backfill", "verify"):
        one, two = (statistics.median(seconds[(job, count)]) for count in (1, 2))
        rows.append(f"| {job} | {payments / one:,.0f} | {payments / two:,.0f} | {one / two:.2f}x |")
    return (
        f"{payments:,} payments ({2 * payments:,} DynamoDB items), `--workers {workers}` per process, median of "
        f"{rounds} rounds, wall clock from start to the last process's exit.\n\n"
        "| job | 1 process, rows/s | 2 processes on one run, rows/s | speed-up |\n|---|---:|---:|---:|\n"
        + "\n".join(rows)
    )


app = command_line()


@app.command()
def main(
    payments: Annotated[int, sized_option("payments seeded", 5_000, 200_000, min=1000)],
    rounds: Annotated[int, sized_option("rounds, alternating which count goes first", 1, 2, min=1)],
    workers: Annotated[int, typer.Option(min=1, help="--workers of each process")] = 4,
) -> None:
    """One process vs two sharing a backfill run and a verify run."""
    run_and_report("shared_runs", run(payments, rounds, workers))


if __name__ == "__main__":
    app()
