"""Customer payment history (50 newest) through the REST gateway over HTTP against the same call on the gRPC stub.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.gateway_overhead [--payments 20000 --customers 400]`.
Target (issue 6): at concurrency 1, gateway p50 within 2.5 ms of the direct gRPC p50 measured in the same run;
throughput at concurrency 32 reported for both. The payment service reads PostgreSQL (stage postgres_only), so
what differs between the two paths is the gateway alone: HTTP parsing, the bearer token, the gRPC hop and JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
import asyncpg
import grpc
import httpx
import typer

from bench.harness import (
    command_line,
    interleaved,
    local_dynamodb_session,
    local_stores,
    run_and_report,
    sized_option,
    wait_for,
)
from bench.payment_history import load_postgres, payments_for, throughput
from chassis.identity import Role
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from gateway.tokens import mint_token
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc
from migration.control import ControlPlane
from migration.schema import upgrade_to_head as upgrade_migration_schema
from migration.stages import Stage, TableMode
from services.payment.adapters.dynamodb import ensure_payment_table
from services.payment.schema import upgrade_to_head as upgrade_payment_schema

TABLE_PREFIX = "bench"
PAGE_SIZE = 50
UNREACHABLE = "127.0.0.1:9"  # peers the history call never uses (listing asks neither customers nor logs)


@dataclass(frozen=True)
class Options:
    """The run's size and outputs, from the command line."""

    payments: int
    customers: int
    iterations: int
    profile_gateway: str | None
    output: str


@asynccontextmanager
async def process(argv: list[str], env: dict[str, str]) -> AsyncIterator[None]:
    child = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        await child.wait()


def http_ready(url: str) -> object:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


async def prepare(postgres_dsn: str, dynamodb_endpoint: str, payments: list[Any]) -> None:
    """Schemas, the DynamoDB table, `payments` loaded into PostgreSQL and the table set to postgres_only."""
    await upgrade_payment_schema(postgres_dsn)
    await upgrade_migration_schema(postgres_dsn)
    session = local_dynamodb_session()
    async with session.client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        await ensure_payment_table(client, f"{TABLE_PREFIX}-payments")
    seconds = await load_postgres(postgres_dsn, payments)
    print(f"loaded {len(payments):,} payments into PostgreSQL in {seconds:.1f}s", flush=True)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        control = ControlPlane(pool, guards=())
        await control.seed({"payments": TableMode("payments", Stage.POSTGRES_ONLY, True)}, who="bench")
    finally:
        await pool.close()


def payment_env(postgres_dsn: str, dynamodb_endpoint: str, port: int, common: dict[str, str]) -> dict[str, str]:
    """The payment service on `port`, at WARNING, against the bench table; peers it never calls unreachable."""
    return {
        **common,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOANBOOK_PAYMENT_GRPC_PORT": str(port),
        "LOANBOOK_PAYMENT_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_PAYMENT_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "LOANBOOK_PAYMENT_DYNAMODB_TABLE_PREFIX": TABLE_PREFIX,
        "LOANBOOK_PAYMENT_CUSTOMER_ADDR": UNREACHABLE,
        "LOANBOOK_PAYMENT_LOG_LEVEL": "WARNING",
        "LOANBOOK_PAYMENT_POSTGRES_POOL_MAX_SIZE": "32",
    }


def gateway_env(port: int, payment_port: int, secret: str, common: dict[str, str]) -> dict[str, str]:
    """The gateway on `port` in front of the payment service, as `make up` runs it (INFO, an access line a request)."""
    return {
        **common,
        "LOANBOOK_GATEWAY_HTTP_PORT": str(port),
        "LOANBOOK_GATEWAY_JWT_SECRET": secret,
        "LOANBOOK_GATEWAY_PAYMENT_ADDR": f"127.0.0.1:{payment_port}",
        "LOANBOOK_GATEWAY_CUSTOMER_ADDR": UNREACHABLE,
        "LOANBOOK_GATEWAY_LOGGING_ADDR": UNREACHABLE,
    }


async def run(args: Options) -> str:
    rng = random.Random(6)  # noqa: S311 - benchmark data
    customers, payments = payments_for(args.customers, args.payments, rng)
    async with local_stores() as (postgres, dynamodb):
        await prepare(postgres.dsn, dynamodb.endpoint, payments)
        payment_port, gateway_port = free_port(), free_port()
        secret = secrets.token_urlsafe(48)
        common = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        payment_process_env = payment_env(postgres.dsn, dynamodb.endpoint, payment_port, common)
        gateway_process_env = gateway_env(gateway_port, payment_port, secret, common)
        async with process([sys.executable, "-m", "services.payment"], payment_process_env):
            await wait_for(grpc_health(f"127.0.0.1:{payment_port}"), 60, "payment service")
            profile = ["-m", "cProfile", "-o", args.profile_gateway] if args.profile_gateway else []
            async with process([sys.executable, *profile, "-m", "gateway"], gateway_process_env):
                gateway_url = f"http://127.0.0.1:{gateway_port}"
                await wait_for(http_ready(f"{gateway_url}/healthz"), 60, "gateway")  # type: ignore[arg-type]
                report = await measure(args, customers, payment_port, gateway_url, secret)
    header = (
        f"Data: {len(payments):,} payments over {len(customers):,} customers (about "
        f"{len(payments) // len(customers)} each), in PostgreSQL (stage postgres_only).\n"
        "The payment service and the gateway each run as their own process (tracing on, exporter none; the\n"
        "gateway at log level INFO, as deployed). Both paths ask the same payment service for the same customers'\n"
        f"{PAGE_SIZE} newest payments: the gateway with `GET /v1/customers/{{id}}/payments?pageSize={PAGE_SIZE}` and\n"
        "the customer's own bearer token over one keep-alive HTTP/1.1 connection pool (aiohttp), the direct path with\n"
        "ListCustomerPayments on a gRPC stub. Concurrency 1 unless stated, calls interleaved.\n\n"
    )
    return header + report


async def measure(args: Options, customers: list[uuid.UUID], payment_port: int, gateway_url: str, secret: str) -> str:
    rng = random.Random(10)  # noqa: S311
    picks = [str(rng.choice(customers)) for _ in range(args.iterations * 4 + 500)]
    # Customers reading their own history: an officer's listing also asks the customer service whether the customer
    # exists, which the direct gRPC call does not (nor is that service started), so only the gateway would differ.
    tokens = {c: mint_token(secret, Role.CUSTOMER, f"bench-{c}", customer_id=c) for c in set(picks)}
    # aiohttp (already locked through aiobotocore) rather than httpx: httpx spent ~0.9 ms of client CPU per call
    # (measured with cProfile), which is the client's cost, not the gateway's.
    connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=4)  # under the gateway's 5 s keep-alive
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{payment_port}") as channel,
        aiohttp.ClientSession(
            base_url=gateway_url,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as http,
    ):
        stub = payment_pb2_grpc.PaymentServiceStub(channel)

        async def direct(i: int) -> object:
            request = pb.ListCustomerPaymentsRequest(customer_id=picks[i % len(picks)], page_size=PAGE_SIZE)
            return await stub.ListCustomerPayments(request, timeout=10)

        async def via_gateway(i: int) -> object:
            customer = picks[i % len(picks)]
            bearer = {"Authorization": f"Bearer {tokens[customer]}"}
            async with http.get(f"/v1/customers/{customer}/payments?pageSize={PAGE_SIZE}", headers=bearer) as response:
                response.raise_for_status()
                return json.loads(await response.read())  # parsed, as the stub's answer is

        # The same answer both ways, or the comparison means nothing.
        first = await via_gateway(0)
        assert len(first["payments"]) == len((await direct(0)).payments) > 0  # type: ignore[index, attr-defined]

        latencies = await interleaved({"gateway (HTTP)": via_gateway, "direct gRPC": direct}, args.iterations)
        gateway_rate = await throughput(via_gateway, args.iterations * 2, 32)
        direct_rate = await throughput(direct, args.iterations * 2, 32)
    via, straight = latencies.values()
    gap = via.p50 - straight.p50
    return "\n".join(
        [
            "| path | calls | p50 ms | p95 ms | p99 ms |",
            "| --- | --- | --- | --- | --- |",
            via.row(),
            straight.row(),
            "",
            f"gateway p50 minus direct gRPC p50 = **{gap:.3f} ms** "
            f"({'meets' if gap <= 2.5 else 'MISSES'} the 2.5 ms target).",
            f"Throughput at concurrency 32: gateway **{gateway_rate:,.0f}/s**, direct gRPC **{direct_rate:,.0f}/s** "
            f"({gateway_rate / direct_rate:.0%} of direct).",
            "",
        ]
    )


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[int, sized_option("payments loaded into PostgreSQL", 5_000, 20_000)],
    customers: Annotated[int, sized_option("customers the payments belong to", 100, 400)],
    iterations: Annotated[int, sized_option("calls timed on each path at concurrency 1", 300, 2000)],
    profile_gateway: Annotated[
        str | None, typer.Option(metavar="FILE", help="run the gateway under cProfile, stats to FILE")
    ] = None,
    output: Annotated[str, typer.Option(help="results file name under bench/results")] = "gateway_overhead",
) -> None:
    args = Options(payments, customers, iterations, profile_gateway, output)
    run_and_report(args.output, run(args))


if __name__ == "__main__":
    app()
