"""RecordPayment and ReversePayment through the payment service in each stage, next to the store writes they are
made of: does dual writing cost the acknowledgement a DynamoDB round trip?

Run: `.venv/bin/python -m bench.write_path [--calls 2000 --rounds 4]` (BENCH_SIZE=quick|full sets the defaults).
Target: in the dual-writing stages (dual_write, dynamo_live) RecordPayment p50 at most 1.3x postgres_only's.

Two payment services run over the same stores and follow the same stage: one as shipped
(`LOANBOOK_PAYMENT_AWAIT_DYNAMODB_COPY=false`: the DynamoDB copy runs after the answer; the journal entry committed
with the row makes it durable either way) and one with `=true` (the answer waits for the copy), each with its relay,
beside the customer service every RecordPayment asks about the loan. At concurrency 1 the two services and the raw
writes are timed in turn, call by call; the stages postgres_only, dual_write and dynamo_live alternate in blocks
over several rounds so the machine's drift hits each alike; dynamo_only comes last (the way back from it needs a
reverse sync). At concurrency 32 each service records (then reverses) flat out in each block.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import grpc
from aiobotocore.config import AioConfig
from google.type import money_pb2

from bench.harness import (
    Latencies,
    command_line,
    interleaved,
    local_dynamodb_session,
    local_stores,
    run_and_report,
    sized_option,
    wait_for,
)
from bench.payment_history import load_dynamo, load_postgres
from chassis.stores import SDK_USER_AGENT, keep_session_state
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from migration.control import ControlPlane
from migration.journal import Journal
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.payment.adapters.dynamodb import DynamoPaymentRepository, ensure_payment_table
from services.payment.adapters.postgres import PostgresPaymentRepository
from services.payment.domain import Payment, PaymentStatus
from toolkit.seeding import FundedLoan, IdSource, create_customers, payments, prepare_schemas

TABLE_PREFIX = "bench"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
# The raw writes journal under a table name no relay serves, so nothing copies them behind the bench's back.
RAW_JOURNAL = "bench_raw"
ALTERNATING = (Stage.POSTGRES_ONLY, Stage.DUAL_WRITE, Stage.DYNAMO_LIVE)
DUAL_WRITING = (Stage.DUAL_WRITE, Stage.DYNAMO_LIVE)
BACKGROUND = "copy after the answer"
AWAITED = "answer waits for the copy"


@dataclass(frozen=True)
class Options:
    payments: int
    customers: int
    calls: int
    rounds: int
    concurrent_calls: int


@dataclass
class Recorded:
    """Payments a contender recorded in the current block, waiting to be reversed (id, version)."""

    ids: list[tuple[str, int]]


class Contender:
    """One payment service process, reached over its own channel."""

    def __init__(self, name: str, port: int, loans: list[FundedLoan], rng: random.Random) -> None:
        self.name = name
        self.port = port
        self._loans = loans
        self._rng = rng
        self.recorded: list[tuple[str, int]] = []
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self._stub = payment_pb2_grpc.PaymentServiceStub(self._channel)

    async def record(self, _: int) -> object:
        loan = self._rng.choice(self._loans)
        request = pb.RecordPaymentRequest(
            idempotency_key=uuid.uuid4().hex,
            customer_id=str(loan.customer_id),
            loan_id=str(loan.id),
            amount=money_pb2.Money(currency_code=loan.principal.currency, units=10),
            method=pb.PAYMENT_METHOD_CARD,
        )
        response = await self._stub.RecordPayment(request, timeout=10)
        self.recorded.append((response.payment.id, response.payment.version))
        return response

    async def reverse(self, _: int) -> object:
        payment_id, version = self.recorded.pop()
        request = pb.ReversePaymentRequest(payment_id=payment_id, version=version, reason="bench")
        return await self._stub.ReversePayment(request, timeout=10)

    async def close(self) -> None:
        await self._channel.close()


class RawWrites:
    """The store writes a RecordPayment / ReversePayment is made of, issued directly from this process."""

    def __init__(self, pool: asyncpg.Pool, dynamo: DynamoPaymentRepository, made: list[Payment]) -> None:
        self.pool = pool
        self._journal = Journal(pool, RAW_JOURNAL)
        self._dynamo = dynamo
        self._fresh = iter(made)
        self._postgres_written: list[Payment] = []
        self._dynamo_written: list[Payment] = []

    def _next(self) -> Payment:
        # Fresh ids and idempotency keys: every raw write inserts, as RecordPayment does.
        return replace(next(self._fresh), id=uuid.uuid4(), idempotency_key=uuid.uuid4().hex)

    async def postgres_insert(self, _: int) -> object:
        payment = self._next()
        async with self.pool.acquire() as connection, connection.transaction():
            await PostgresPaymentRepository(connection).create(payment)
            await self._journal.append(connection, str(payment.id), 1, [f"payment:{payment.id}"])
        self._postgres_written.append(payment)
        return payment

    async def postgres_update(self, _: int) -> object:
        payment = self._postgres_written.pop()
        reversed_payment = replace(payment, status=PaymentStatus.REVERSED, version=2)
        async with self.pool.acquire() as connection, connection.transaction():
            await PostgresPaymentRepository(connection).update(reversed_payment, 1)
            await self._journal.append(connection, str(payment.id), 2, [f"payment:{payment.id}"])
        return reversed_payment

    async def dynamo_create(self, _: int) -> object:
        payment = await self._dynamo.create(self._next())
        self._dynamo_written.append(payment)
        return payment

    async def dynamo_update(self, _: int) -> object:
        payment = self._dynamo_written.pop()
        return await self._dynamo.update(replace(payment, status=PaymentStatus.REVERSED, version=2), 1)

    async def forget_journal(self) -> None:
        await self.pool.execute("DELETE FROM migration.journal WHERE table_name = $1", RAW_JOURNAL)


async def concurrently(
    call: Callable[[int], Awaitable[object]], calls: int, concurrency: int
) -> tuple[float, Latencies, int]:
    """Answered calls per second with `concurrency` callers in flight, each answered call's latency, and how many
    failed (DynamoDB Local falls behind 32 writers: a call past the service's 2 s DynamoDB timeout is UNAVAILABLE)."""
    counter = iter(range(calls))
    seconds: list[float] = []
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for i in counter:
            started = time.perf_counter()
            try:
                await call(i)
            except grpc.aio.AioRpcError:
                failed += 1
                continue
            seconds.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(seconds) / (time.perf_counter() - started), Latencies("", seconds), failed


@dataclass
class StageFigures:
    """Everything measured in one stage, summed over its blocks."""

    single: dict[str, list[float]]
    rates: dict[str, list[float]]
    concurrent: dict[str, list[float]]
    failed: dict[str, int]


async def drained(journal: Journal) -> None:
    """Waits until the payments journal is empty (the services' relays and copies have caught up)."""
    await wait_for(lambda: _empty(journal), 300, "the payments journal to drain")


async def _empty(journal: Journal) -> bool:
    return (await journal.backlog()).pending == 0


def _service_env(base: dict[str, str], port: int, dsn: str, endpoint: str, customer: str) -> dict[str, str]:
    return {
        **base,
        "LOANBOOK_PAYMENT_GRPC_PORT": str(port),
        "LOANBOOK_PAYMENT_POSTGRES_DSN": dsn,
        "LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT": endpoint,
        "LOANBOOK_PAYMENT_DYNAMODB_TABLE_PREFIX": TABLE_PREFIX,
        "LOANBOOK_PAYMENT_CUSTOMER_ADDR": customer,
        "LOANBOOK_PAYMENT_LOG_LEVEL": "WARNING",
        "LOANBOOK_PAYMENT_POSTGRES_POOL_MAX_SIZE": "32",
        "LOANBOOK_PAYMENT_MODE_POLL_SECONDS": "1",
        # DynamoDB Local is consistent at once: no settling, as in the tests.
        "LOANBOOK_PAYMENT_JOURNAL_SETTLE_SECONDS": "0",
    }


async def run(options: Options) -> str:
    rng = random.Random(11)  # noqa: S311 - benchmark data
    async with local_stores() as (postgres, dynamodb):
        dsn = postgres.dsn
        await prepare_schemas(dsn)
        await upgrade_migration_schema(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8, reset=keep_session_state)
        loans = await create_customers(pool, options.customers, rng, IdSource(), T0)
        ids = IdSource()
        history = list(payments(loans, options.payments, rng, ids, T0, T0 + timedelta(days=365)))
        # Each block's raw inserts (PostgreSQL and DynamoDB) and warm-ups, with room to spare.
        raw_payments = list(payments(loans, options.calls * 10 + 2000, rng, ids, T0, T0 + timedelta(days=365)))
        config = AioConfig(max_pool_connections=64, retries={"max_attempts": 2}, user_agent=SDK_USER_AGENT)
        session = local_dynamodb_session()
        async with session.client("dynamodb", endpoint_url=dynamodb.endpoint, config=config) as client:
            table = f"{TABLE_PREFIX}-payments"
            await ensure_payment_table(client, table)
            await ensure_payment_table(client, f"{TABLE_PREFIX}-raw-payments")
            pg_seconds = await load_postgres(dsn, history)
            ddb_seconds = await load_dynamo(client, table, history)
            print(f"loaded {len(history):,} payments ({pg_seconds:.1f} s, {ddb_seconds:.1f} s)", flush=True)
            control = ControlPlane(pool, guards=())
            await control.seed({"payments": TableMode("payments", Stage.POSTGRES_ONLY, True)}, who="bench")
            base = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "OTEL_TRACES_EXPORTER": "none",
            }
            customer_port, background_port, awaited_port = free_port(), free_port(), free_port()
            customer_env = {
                **base,
                "LOANBOOK_CUSTOMER_GRPC_PORT": str(customer_port),
                "LOANBOOK_CUSTOMER_POSTGRES_DSN": dsn,
                "LOANBOOK_CUSTOMER_LOG_LEVEL": "WARNING",
            }
            customer_addr = f"127.0.0.1:{customer_port}"
            background_env = {
                **_service_env(base, background_port, dsn, dynamodb.endpoint, customer_addr),
                "LOANBOOK_PAYMENT_AWAIT_DYNAMODB_COPY": "false",
            }
            awaited_env = {
                **_service_env(base, awaited_port, dsn, dynamodb.endpoint, customer_addr),
                "LOANBOOK_PAYMENT_AWAIT_DYNAMODB_COPY": "true",
            }
            processes = [
                await asyncio.create_subprocess_exec(sys.executable, "-m", "services.customer", env=customer_env),
                await asyncio.create_subprocess_exec(sys.executable, "-m", "services.payment", env=background_env),
                await asyncio.create_subprocess_exec(sys.executable, "-m", "services.payment", env=awaited_env),
            ]
            try:
                for port in (customer_port, background_port, awaited_port):
                    await wait_for(grpc_health(f"127.0.0.1:{port}"), 60, f"service on port {port}")
                contenders = [
                    Contender(BACKGROUND, background_port, loans, random.Random(1)),  # noqa: S311
                    Contender(AWAITED, awaited_port, loans, random.Random(2)),  # noqa: S311
                ]
                raw = RawWrites(pool, DynamoPaymentRepository(client, f"{TABLE_PREFIX}-raw-payments"), raw_payments)
                report = await measure(options, control, contenders, raw, customer_addr, loans)
            finally:
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                    await process.wait()
                await pool.close()
    header = (
        f"Data: {len(history):,} payments already in both stores over {len({loan.customer_id for loan in loans}):,} "
        f"customers' funded loans (COPY into PostgreSQL in {pg_seconds:.1f} s, BatchWriteItem into DynamoDB Local "
        f"in {ddb_seconds:.1f} s). At concurrency 1, {options.calls:,} calls a path and stage ({options.rounds} blocks "
        f"of each PostgreSQL-writing stage, one of dynamo_only); at concurrency 32, {options.concurrent_calls:,} "
        "calls a service and stage. Each RecordPayment looks up its idempotency key, asks the customer service about "
        "the loan (CheckLoanStanding, a gRPC call to its own process) and writes; each ReversePayment reads the "
        "payment and writes its next version. Services traced (exporter none), relays on, journal settling 0 s "
        "(DynamoDB Local is consistent at once). DynamoDB Local is functionally faithful but not a latency "
        "reference for DynamoDB: what counts is the ratio.\n\n"
    )
    return header + report


async def measure(
    options: Options,
    control: ControlPlane,
    contenders: list[Contender],
    raw: RawWrites,
    customer_addr: str,
    loans: list[FundedLoan],
) -> str:
    async with grpc.aio.insecure_channel(customer_addr) as channel:
        customer_stub = customer_pb2_grpc.CustomerServiceStub(channel)

        async def loan_standing(i: int) -> object:
            loan = loans[i % len(loans)]
            request = customer_pb2.CheckLoanStandingRequest(loan_id=str(loan.id), customer_id=str(loan.customer_id))
            return await customer_stub.CheckLoanStanding(request, timeout=10)

        figures: dict[Stage, StageFigures] = {}
        payments_journal = Journal(raw.pool, "payments")

        async def block(stage: Stage, calls: int, concurrent_calls: int, warmup: int) -> None:
            await drained(payments_journal)  # the last block's copies are done: no relay works behind this block's back
            await control.change("payments", stage=stage, fallback=True, who="bench")
            await asyncio.sleep(1.5)  # every service follows within a notification; the poll is 1 s here
            figure = figures.setdefault(stage, StageFigures({}, {}, {}, {}))
            writes_postgres = stage is not Stage.DYNAMO_ONLY
            writes_dynamo = stage is not Stage.POSTGRES_ONLY
            record_paths: dict[str, Callable[[int], Awaitable[object]]] = {
                f"RecordPayment, {c.name}": c.record for c in contenders
            }
            reverse_paths: dict[str, Callable[[int], Awaitable[object]]] = {
                f"ReversePayment, {c.name}": c.reverse for c in contenders
            }
            if writes_postgres:
                record_paths["raw: PostgreSQL insert + journal entry (one transaction)"] = raw.postgres_insert
                reverse_paths["raw: PostgreSQL update + journal entry (one transaction)"] = raw.postgres_update
            if writes_dynamo:
                record_paths["raw: DynamoDB TransactWriteItems (payment + idempotency marker)"] = raw.dynamo_create
                reverse_paths["raw: DynamoDB conditional PutItem"] = raw.dynamo_update
            record_paths["raw: CheckLoanStanding (customer service)"] = loan_standing
            for paths in (record_paths, reverse_paths):
                for name, latencies in (await interleaved(paths, calls, warmup=warmup)).items():
                    figure.single.setdefault(name, []).extend(latencies.seconds)
            for contender in contenders:
                for operation, call in (("RecordPayment", contender.record), ("ReversePayment", contender.reverse)):
                    name = f"{operation}, {contender.name}"
                    # A failed RecordPayment leaves nothing to reverse: reverse what was recorded.
                    count = concurrent_calls if operation == "RecordPayment" else len(contender.recorded)
                    rate, latencies, failed = await concurrently(call, count, 32)
                    figure.rates.setdefault(name, []).append(rate)
                    figure.failed[name] = figure.failed.get(name, 0) + failed
                    figure.concurrent.setdefault(name, []).extend(latencies.seconds)
            await raw.forget_journal()

        per_block = max(1, options.calls // options.rounds)
        concurrent_per_block = max(32, options.concurrent_calls // options.rounds)
        for round_number in range(options.rounds):
            for stage in ALTERNATING:
                await block(stage, per_block, concurrent_per_block, warmup=50 if round_number == 0 else 10)
        await block(Stage.DYNAMO_ONLY, options.calls, options.concurrent_calls, warmup=50)
    return report(figures, options)


def report(figures: dict[Stage, StageFigures], options: Options) -> str:
    sections = []
    baseline = Latencies("", figures[Stage.POSTGRES_ONLY].single[f"RecordPayment, {BACKGROUND}"]).p50
    verdicts = []
    for stage in (*ALTERNATING, Stage.DYNAMO_ONLY):
        figure = figures[stage]
        sections += [
            f"## Stage {stage.value}",
            "",
            f"Concurrency 1 ({'one block' if stage is Stage.DYNAMO_ONLY else f'{options.rounds} blocks'}):",
            "",
            "| path | calls | p50 ms | p95 ms | p99 ms |",
            "| --- | --- | --- | --- | --- |",
            *(Latencies(name, seconds).row() for name, seconds in figure.single.items()),
            "",
            "Concurrency 32 (32 callers flat out; throughput the median of the blocks):",
            "",
            "| path | answered calls/s | p50 ms | p99 ms | failed calls |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, rates in figure.rates.items():
            latencies = Latencies(name, figure.concurrent[name])
            sections.append(
                f"| {name} | {statistics.median(rates):,.0f} | {latencies.p50:.3f} | {latencies.percentile(99):.3f} "
                f"| {figure.failed.get(name, 0)} |"
            )
        sections.append("")
        if stage in DUAL_WRITING:
            for contender in (BACKGROUND, AWAITED):
                ratio = Latencies("", figure.single[f"RecordPayment, {contender}"]).p50 / baseline
                verdicts.append(
                    f"- {stage.value}, {contender}: RecordPayment p50 / postgres_only's = **{ratio:.2f}x** "
                    f"({'meets' if ratio <= 1.3 else 'misses'} the 1.3x target"
                    ")"
                )
    return "\n".join(
        [
            "## Target: RecordPayment p50 in the dual-writing stages at most 1.3x postgres_only's",
            "",
            f"postgres_only's RecordPayment p50: {baseline:.3f} ms.",
            "",
            *verdicts,
            "",
            *sections,
        ]
    )


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[int, sized_option("payments already in both stores", 10_000, 100_000)],
    customers: Annotated[int, sized_option("customers with a funded loan", 400, 2_000)],
    calls: Annotated[int, sized_option("calls timed per path and stage at concurrency 1", 300, 2000)],
    rounds: Annotated[int, sized_option("alternating blocks of postgres_only, dual_write, dynamo_live", 2, 4)],
    concurrent_calls: Annotated[int, sized_option("calls per service and stage at concurrency 32", 640, 4000)],
) -> None:
    options = Options(payments, customers, calls, rounds, concurrent_calls)
    run_and_report("write_path", run(options))


if __name__ == "__main__":
    app()
