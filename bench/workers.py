"""Throughput at concurrency 32 by worker count: a payment history through the gateway and on the gRPC stub directly.

Run: `.venv/bin/python -m bench.workers [--workers 1,2 --payments 20000]` (BENCH_SIZE=quick|full: the defaults).
Target: at every worker count, the gateway at c=32 passes at least 0.8x the direct gRPC throughput of the same
payment service. Each worker count is a payment service and a gateway of its own, both with that many workers
(LOANBOOK_PAYMENT_WORKERS, LOANBOOK_GATEWAY_WORKERS), over the same PostgreSQL (stage postgres_only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import aiohttp
import grpc
import typer

from bench import gateway_overhead
from bench.gateway_overhead import PAGE_SIZE, http_ready
from bench.harness import command_line, local_stores, run_and_report, sized_option, wait_for
from bench.payment_history import payments_for, throughput
from chassis.config import MAX_WORKERS
from chassis.identity import Role
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from gateway.tokens import mint_token
from loanbook.payment.v1 import payment_pb2 as pb
from loanbook.payment.v1 import payment_pb2_grpc

CONCURRENCY = 32
TARGET = 0.8
# The direct path opens this many connections (a channel each): SO_REUSEPORT spreads connections, not calls, so one
# channel would reach one worker. The gateway's HTTP client opens up to one connection per caller.
DIRECT_CONNECTIONS = 8
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass(frozen=True)
class Options:
    workers: list[int]
    payments: int
    customers: int
    calls: int
    rounds: int
    output: str


@dataclass(frozen=True)
class Measured:
    workers: int
    direct: list[float]
    gateway: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.gateway) / statistics.median(self.direct)


@contextlib.asynccontextmanager
async def served(argv: list[str], env: dict[str, str], log: Path) -> AsyncIterator[Callable[[], str]]:
    """A process whose output goes to `log`; yields a reader of that log. SIGTERM, then wait, on the way out."""
    with log.open("wb") as sink:
        child = await asyncio.create_subprocess_exec(*argv, env=env, stdout=sink, stderr=sink)
    try:
        yield lambda: log.read_text(errors="replace")
    finally:
        child.send_signal(signal.SIGTERM)
        await child.wait()


def all_workers_serving(probe: Callable[[], Awaitable[bool]], log: Callable[[], str], workers: int) -> object:
    """Ready once `probe` passes and, with several workers, every worker has reported (the first serves alone)."""

    async def ready() -> bool:
        return await probe() and (workers == 1 or "all workers serving" in log())

    return ready


@contextlib.asynccontextmanager
async def stack(
    postgres_dsn: str, dynamodb_endpoint: str, secret: str, workers: int, logs: Path
) -> AsyncIterator[tuple[int, str]]:
    """A payment service and a gateway, each with `workers` workers; yields the gRPC port and the gateway's URL."""
    payment_port, gateway_port = free_port(), free_port()
    common = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
    payment_env = gateway_overhead.payment_env(postgres_dsn, dynamodb_endpoint, payment_port, common)
    payment_env["LOANBOOK_PAYMENT_WORKERS"] = str(workers)
    payment_env["LOANBOOK_PAYMENT_LOG_LEVEL"] = "INFO"  # the supervisor says at INFO when every worker serves
    gateway_env = gateway_overhead.gateway_env(gateway_port, payment_port, secret, common)
    gateway_env["LOANBOOK_GATEWAY_WORKERS"] = str(workers)
    payment_argv = [sys.executable, "-m", "services.payment"]
    async with served(payment_argv, payment_env, logs / f"payment-{workers}.log") as payment_log:
        ready = all_workers_serving(grpc_health(f"127.0.0.1:{payment_port}"), payment_log, workers)
        await wait_for(ready, 120, "payment service")  # type: ignore[arg-type]
        async with served([sys.executable, "-m", "gateway"], gateway_env, logs / f"gateway-{workers}.log") as log:
            url = f"http://127.0.0.1:{gateway_port}"
            ready = all_workers_serving(http_ready(f"{url}/healthz"), log, workers)  # type: ignore[arg-type]
            await wait_for(ready, 120, "gateway")  # type: ignore[arg-type]
            yield payment_port, url


async def measure(args: Options, workers: int, port: int, url: str, picks: list[str], secret: str) -> Measured:
    tokens = {c: mint_token(secret, Role.CUSTOMER, f"bench-{c}", customer_id=c) for c in set(picks)}
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION) for _ in range(DIRECT_CONNECTIONS)
    ]
    stubs = [payment_pb2_grpc.PaymentServiceStub(channel) for channel in channels]
    http = aiohttp.ClientSession(
        base_url=url,
        connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=4),  # under the gateway's 5 s keep-alive
        timeout=aiohttp.ClientTimeout(total=10),
    )
    try:

        async def direct(i: int) -> object:
            request = pb.ListCustomerPaymentsRequest(customer_id=picks[i % len(picks)], page_size=PAGE_SIZE)
            return await stubs[i % len(stubs)].ListCustomerPayments(request, timeout=10)

        async def via_gateway(i: int) -> object:
            customer = picks[i % len(picks)]
            bearer = {"Authorization": f"Bearer {tokens[customer]}"}
            async with http.get(f"/v1/customers/{customer}/payments?pageSize={PAGE_SIZE}", headers=bearer) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{r.status} from the gateway: {body[:300]!r}")
                return json.loads(body)  # parsed, as the stub's answer is

        # The same answer both ways, or the comparison means nothing.
        first = await via_gateway(0)
        assert len(first["payments"]) == len((await direct(0)).payments) > 0  # type: ignore[index, attr-defined]
        for warm in (direct, via_gateway):  # every connection open and every worker's pool filled
            await throughput(warm, CONCURRENCY * 4, CONCURRENCY)
        direct_rates, gateway_rates = [], []
        for _ in range(args.rounds):  # alternating, so a busy moment of the machine hits both paths alike
            direct_rates.append(await throughput(direct, args.calls, CONCURRENCY))
            gateway_rates.append(await throughput(via_gateway, args.calls, CONCURRENCY))
    finally:
        await http.close()
        for channel in channels:
            await channel.close()
    return Measured(workers, direct_rates, gateway_rates)


async def run(args: Options) -> str:
    rng = random.Random(17)  # noqa: S311 - benchmark data
    customers, payments = payments_for(args.customers, args.payments, rng)
    picks = [str(rng.choice(customers)) for _ in range(args.calls + 500)]
    results = []
    async with local_stores() as (postgres, dynamodb):
        await gateway_overhead.prepare(postgres.dsn, dynamodb.endpoint, payments)
        secret = secrets.token_urlsafe(48)
        with tempfile.TemporaryDirectory(prefix="loanbook-bench-workers-") as logs:
            for workers in args.workers:
                async with stack(postgres.dsn, dynamodb.endpoint, secret, workers, Path(logs)) as (port, url):
                    results.append(await measure(args, workers, port, url, picks, secret))
                    print(f"measured {workers} worker(s)", flush=True)
    return report(args, customers, len(payments), results)


def report(args: Options, customers: list[uuid.UUID], payments: int, results: list[Measured]) -> str:
    baseline = {"direct": statistics.median(results[0].direct), "gateway": statistics.median(results[0].gateway)}

    def rates(runs: list[float]) -> str:
        return ", ".join(f"{rate:,.0f}" for rate in runs)

    rows = [
        f"| {m.workers} | {rates(m.direct)} | **{statistics.median(m.direct):,.0f}** "
        f"({statistics.median(m.direct) / baseline['direct']:.2f}x) | {rates(m.gateway)} | "
        f"**{statistics.median(m.gateway):,.0f}** ({statistics.median(m.gateway) / baseline['gateway']:.2f}x) | "
        f"**{m.ratio:.2f}** |"
        for m in results
    ]
    verdicts = [f"{m.workers} worker(s): {m.ratio:.2f}x, {'meets' if m.ratio >= TARGET else 'MISSES'}" for m in results]
    return "\n".join(
        [
            f"Data: {payments:,} payments over {len(customers):,} customers, in PostgreSQL (stage postgres_only).",
            "Per worker count: a payment service and a gateway, each with that many workers on one port",
            "(SO_REUSEPORT), tracing on with exporter none, the gateway at log level INFO. Calls: the",
            f"{PAGE_SIZE} newest payments of a customer, `GET /v1/customers/{{id}}/payments?pageSize={PAGE_SIZE}` with",
            "the customer's own token through the gateway (aiohttp, keep-alive), and ListCustomerPayments on the",
            f"stub over {DIRECT_CONNECTIONS} gRPC connections. Throughput at concurrency {CONCURRENCY}, "
            f"{args.calls:,} calls a round,",
            f"{args.rounds} round(s) a path, the paths alternating; the benchmark's client shares the machine's",
            "cores with the servers. In brackets: the median against the first worker count's.",
            "",
            "| workers | direct gRPC rounds (calls/s) | direct median | gateway rounds (calls/s) | gateway median "
            "| gateway / direct |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Target gateway at c={CONCURRENCY} >= {TARGET}x direct: " + "; ".join(verdicts) + ".",
            "",
        ]
    )


def worker_counts(value: str) -> list[int]:
    problem = typer.BadParameter(f"{value!r}: give a comma-separated list of worker counts, each 1..64")
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise problem from None
    if not counts or any(not 1 <= count <= MAX_WORKERS for count in counts):
        raise problem
    return counts


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[int, sized_option("payments loaded into PostgreSQL", 5_000, 20_000)],
    customers: Annotated[int, sized_option("customers the payments belong to", 100, 400)],
    calls: Annotated[int, sized_option("calls a round, on each path", 1000, 4000)],
    rounds: Annotated[int, sized_option("rounds on each path, alternating", 2, 3)],
    workers: Annotated[str, typer.Option(help="worker counts to measure, comma-separated")] = "1,2",
    output: Annotated[str, typer.Option(help="results file name under the results folder")] = "workers",
) -> None:
    run_and_report(output, run(Options(worker_counts(workers), payments, customers, calls, rounds, output)))


if __name__ == "__main__":
    app()
