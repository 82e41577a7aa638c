"""What telemetry costs: the same stack with traces and metrics on, and with the SDK off, side by side.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.telemetry_cost [--payments 20000 --customers 400]`.
Target: with traces (every request sampled, exported over OTLP) and metrics (a Prometheus endpoint, scraped) on,
throughput at concurrency 32 at most 10 % below the same stack with OTEL_SDK_DISABLED=true. Each side is a payment
service and a gateway of its own, over the same PostgreSQL; calls go through the gateway (the whole path traced).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import aiohttp
import grpc
import typer
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench import gateway_overhead
from bench.gateway_overhead import PAGE_SIZE, http_ready, process
from bench.harness import command_line, interleaved, local_stores, run_and_report, sized_option, wait_for
from bench.payment_history import payments_for, throughput
from chassis.identity import Role
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from gateway.tokens import mint_token

ROUNDS = 5
SCRAPE_SECONDS = 5.0  # a busy Prometheus setting (15 s is its default): the endpoint's cost is counted generously


@dataclass(frozen=True)
class Options:
    payments: int
    customers: int
    iterations: int
    sampler: str
    sampler_arg: str
    traces: bool
    metrics: bool
    output: str


@dataclass
class Received:
    """What the collector stand-in was sent (the counts prove the exports ran)."""

    spans: int = 0
    metric_exports: int = 0


class TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[
            trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse
        ],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.received.spans += sum(len(scope.spans) for r in request.resource_spans for scope in r.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class MetricSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    async def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext[
            metrics_service_pb2.ExportMetricsServiceRequest, metrics_service_pb2.ExportMetricsServiceResponse
        ],
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.received.metric_exports += 1
        return metrics_service_pb2.ExportMetricsServiceResponse()


@contextlib.asynccontextmanager
async def otlp_sink() -> AsyncIterator[tuple[Received, str]]:
    """An OTLP/gRPC endpoint that accepts traces and metrics and keeps only their counts, as a collector stand-in."""
    received, server = Received(), grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceSink(received), server)  # type: ignore[no-untyped-call]
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricSink(received), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield received, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(grace=0)


async def scrape_forever(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url) as response:
                await response.read()
            await asyncio.sleep(SCRAPE_SECONDS)


@contextlib.asynccontextmanager
async def stack(
    postgres_dsn: str, dynamodb_endpoint: str, secret: str, telemetry: dict[str, str]
) -> AsyncIterator[str]:
    """A payment service and a gateway in front of it, with `telemetry`'s variables; yields the gateway's URL."""
    payment_port, gateway_port = free_port(), free_port()
    common = {**os.environ, **telemetry}
    payment_env = gateway_overhead.payment_env(postgres_dsn, dynamodb_endpoint, payment_port, common)
    gateway_env = gateway_overhead.gateway_env(gateway_port, payment_port, secret, common)
    scrapers: list[asyncio.Task[None]] = []
    metrics_ports = {}
    if telemetry.get("OTEL_METRICS_EXPORTER", "none") != "none":
        metrics_ports = {"payment": free_port(), "gateway": free_port()}
        payment_env["LOANBOOK_PAYMENT_METRICS_PORT"] = str(metrics_ports["payment"])
        gateway_env["LOANBOOK_GATEWAY_METRICS_PORT"] = str(metrics_ports["gateway"])
    async with process([sys.executable, "-m", "services.payment"], payment_env):
        await wait_for(grpc_health(f"127.0.0.1:{payment_port}"), 60, "payment service")
        async with process([sys.executable, "-m", "gateway"], gateway_env):
            url = f"http://127.0.0.1:{gateway_port}"
            await wait_for(http_ready(f"{url}/healthz"), 60, "gateway")  # type: ignore[arg-type]
            scrapers = [
                asyncio.create_task(scrape_forever(f"http://127.0.0.1:{port}/metrics"))
                for port in metrics_ports.values()
            ]
            try:
                yield url
            finally:
                for scraper in scrapers:
                    scraper.cancel()
                await asyncio.gather(*scrapers, return_exceptions=True)


async def run(args: Options) -> str:
    rng = random.Random(15)  # noqa: S311 - benchmark data
    customers, payments = payments_for(args.customers, args.payments, rng)
    async with local_stores() as (postgres, dynamodb), otlp_sink() as (sink, sink_url):
        await gateway_overhead.prepare(postgres.dsn, dynamodb.endpoint, payments)
        secret = secrets.token_urlsafe(48)
        on = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": args.sampler,
            "OTEL_TRACES_SAMPLER_ARG": args.sampler_arg,
            "OTEL_TRACES_EXPORTER": "otlp" if args.traces else "none",
            "OTEL_METRICS_EXPORTER": "otlp" if args.metrics else "none",
            "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        }
        off = {"OTEL_SDK_DISABLED": "true"}
        async with (
            stack(postgres.dsn, dynamodb.endpoint, secret, on) as traced,
            stack(postgres.dsn, dynamodb.endpoint, secret, off) as untraced,
        ):
            picks = [str(rng.choice(customers)) for _ in range(args.iterations * 8 + 500)]
            # Customers reading their own history: an officer's listing would also ask the customer service.
            tokens = {c: mint_token(secret, Role.CUSTOMER, f"bench-{c}", customer_id=c) for c in set(picks)}
            rows = await measure(args, picks, tokens, {"telemetry on": traced, "telemetry off": untraced})
    return (
        f"Data: {len(payments):,} payments over {len(customers):,} customers, in PostgreSQL (stage postgres_only).\n"
        f"Each side: a payment service and a gateway. On: traces {describe_traces(args)}, metrics "
        f"{describe_metrics(args)}.\nOff: OTEL_SDK_DISABLED=true.\n"
        f"Calls: `GET /v1/customers/{{id}}/payments?pageSize={PAGE_SIZE}` through the gateway, interleaved at\n"
        f"concurrency 1; throughput at concurrency 32, the two sides alternating, {ROUNDS} rounds each.\n"
        f"The collector stand-in received {sink.spans:,} spans and {sink.metric_exports} metric exports.\n\n" + rows
    )


def describe_traces(args: Options) -> str:
    if not args.traces:
        return "not exported (OTEL_TRACES_EXPORTER=none)"
    return (
        f"sampled by {args.sampler} ({args.sampler_arg}) and exported over OTLP/gRPC to a collector stand-in "
        "in the benchmark process"
    )


def describe_metrics(args: Options) -> str:
    if not args.metrics:
        return "off (OTEL_METRICS_EXPORTER=none)"
    return f"pushed over OTLP every 10 s and served on a Prometheus endpoint scraped every {SCRAPE_SECONDS:.0f} s"


async def measure(args: Options, picks: list[str], tokens: dict[str, str], gateways: dict[str, str]) -> str:
    sessions = {
        name: aiohttp.ClientSession(
            base_url=url,
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=4),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        for name, url in gateways.items()
    }
    try:

        def caller(http: aiohttp.ClientSession) -> Callable[[int], Awaitable[object]]:
            async def call(i: int) -> object:
                customer = picks[i % len(picks)]
                bearer = {"Authorization": f"Bearer {tokens[customer]}"}
                async with http.get(f"/v1/customers/{customer}/payments?pageSize={PAGE_SIZE}", headers=bearer) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{r.status} from {r.url.host}:{r.url.port}: {body[:300]!r}")
                    return body

            return call

        calls = {name: caller(http) for name, http in sessions.items()}
        latencies = await interleaved(calls, args.iterations)
        rates: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                rates[name].append(await throughput(call, args.iterations * 2, 32))
    finally:
        for http in sessions.values():
            await http.close()
    # The median of the rounds: one round can land on a moment the machine (2 cores, 4 servers) is busy elsewhere.
    on, off = (statistics.median(rates[name]) for name in ("telemetry on", "telemetry off"))
    lower = 1 - on / off
    p50_on, p50_off = latencies["telemetry on"].p50, latencies["telemetry off"].p50
    return "\n".join(
        [
            "| side | calls | p50 ms | p95 ms | p99 ms |",
            "| --- | --- | --- | --- | --- |",
            *(latency.row() for latency in latencies.values()),
            "",
            "| side | throughput at c=32, rounds (calls/s) | median |",
            "| --- | --- | --- |",
            *(
                f"| {n} | {', '.join(f'{r:,.0f}' for r in runs)} | {statistics.median(runs):,.0f} |"
                for n, runs in rates.items()
            ),
            "",
            f"p50 with telemetry on minus off = **{p50_on - p50_off:.3f} ms**; throughput with telemetry on is "
            f"**{lower:.1%} lower** ({'meets' if lower <= 0.10 else 'MISSES'} the 10 % target).",
            "",
        ]
    )


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(
    payments: Annotated[int, sized_option("payments loaded into PostgreSQL", 5_000, 20_000)],
    customers: Annotated[int, sized_option("customers the payments belong to", 100, 400)],
    iterations: Annotated[int, sized_option("calls timed on each side at concurrency 1", 300, 2000)],
    sampler: Annotated[str, typer.Option(help="OTEL_TRACES_SAMPLER of the side with telemetry on")] = (
        "parentbased_always_on"
    ),
    sampler_arg: Annotated[str, typer.Option(help="OTEL_TRACES_SAMPLER_ARG (a ratio sampler's share)")] = "1.0",
    traces: Annotated[bool, typer.Option(help="export traces on the side with telemetry on")] = True,
    metrics: Annotated[bool, typer.Option(help="metrics (OTLP and Prometheus) on the side with telemetry on")] = True,
    output: Annotated[str, typer.Option(help="results file name under bench/results")] = "telemetry_cost",
) -> None:
    run_and_report(output, run(Options(payments, customers, iterations, sampler, sampler_arg, traces, metrics, output)))


if __name__ == "__main__":
    app()
