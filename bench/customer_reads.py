"""GetCustomer and ListLoanApplications(customer) through gRPC vs the same query on asyncpg, side by side.

Run: `[BENCH_SIZE=full] .venv/bin/python -m bench.customer_reads [--iterations N]`. Loads 10k customers and 50k
applications, starts the customer service as its own process (as deployed), and times both paths interleaved in one
run.
Target (issue 3): gRPC p50 within 1.0 ms of the direct query's p50.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from datetime import date
from typing import Annotated

import asyncpg
import grpc

from bench.harness import command_line, interleaved, postgres_for_bench, run_and_report, sized_option, wait_for
from chassis.ids import new_id
from chassis.stores import keep_session_state
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc
from services.customer.adapters.postgres import APPLICATION_COLUMNS, CUSTOMER_COLUMNS
from services.customer.schema import upgrade_to_head

CUSTOMERS = 10_000
APPLICATIONS_PER_CUSTOMER = 5
BRANCHES = 20
OFFICERS_PER_BRANCH = 5
STATUSES = ["SUBMITTED", "UNDER_REVIEW", "APPROVED", "REJECTED", "WITHDRAWN", "FUNDED", "CLOSED"]


async def load(dsn: str) -> list[uuid.UUID]:
    """COPY the data set in; returns the customer ids."""
    await upgrade_to_head(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "TRUNCATE customer.loan_application_events, customer.loan_applications, customer.customers,"
            " customer.loan_officers, customer.branches"
        )
        rng = random.Random(7)  # noqa: S311 - test data, not secrets
        branches = [(new_id(), f"BR-{i:03d}", f"Branch {i}", f"{i} Bench Street") for i in range(BRANCHES)]
        officers = [
            (new_id(), branch[0], f"Officer {i}-{j}", f"officer{i}.{j}@bench.example")
            for i, branch in enumerate(branches)
            for j in range(OFFICERS_PER_BRANCH)
        ]
        customers = [
            (
                new_id(),
                branches[i % BRANCHES][0],
                f"Customer {i}",
                f"customer{i}@bench.example",
                "+12125550100",
                date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
                f"BENCH-{i:06d}",
            )
            for i in range(CUSTOMERS)
        ]
        officers_by_branch: dict[uuid.UUID, list[uuid.UUID]] = {}
        for officer in officers:
            officers_by_branch.setdefault(officer[1], []).append(officer[0])
        applications = [
            (
                new_id(),
                customer[0],
                customer[1],
                rng.choice(officers_by_branch[customer[1]]),
                rng.randrange(100_00, 500_000_00),
                "USD",
                rng.choice([12, 24, 36, 60, 360]),
                rng.randrange(300, 2000),
                "bench",
                rng.choice(STATUSES),
            )
            for customer in customers
            for _ in range(APPLICATIONS_PER_CUSTOMER)
        ]
        await connection.copy_records_to_table(
            "branches", schema_name="customer", records=branches, columns=["id", "code", "name", "address"]
        )
        await connection.copy_records_to_table(
            "loan_officers", schema_name="customer", records=officers, columns=["id", "branch_id", "name", "email"]
        )
        await connection.copy_records_to_table(
            "customers",
            schema_name="customer",
            records=customers,
            columns=CUSTOMER_COLUMNS,
        )
        await connection.copy_records_to_table(
            "loan_applications",
            schema_name="customer",
            records=applications,
            columns=APPLICATION_COLUMNS,
        )
        await connection.execute("ANALYZE")
        return [customer[0] for customer in customers]
    finally:
        await connection.close()


async def run(iterations: int) -> str:
    async with postgres_for_bench() as dsn:
        customer_ids = await load(dsn)
        port = free_port()
        env = {
            **os.environ,
            "LOANBOOK_CUSTOMER_GRPC_PORT": str(port),
            "LOANBOOK_CUSTOMER_POSTGRES_DSN": dsn,
            "LOANBOOK_CUSTOMER_LOG_LEVEL": "WARNING",
            "OTEL_TRACES_EXPORTER": "none",
        }
        service = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.customer", env=env)
        # Released like the service releases its connections (chassis.stores): no reset query on either side.
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, reset=keep_session_state)
        try:
            await wait_for(grpc_health(f"127.0.0.1:{port}"), 30, "customer service")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = customer_pb2_grpc.CustomerServiceStub(channel)
                rng = random.Random(11)  # noqa: S311
                picks = [rng.choice(customer_ids) for _ in range(iterations + 200)]

                async def grpc_get(i: int) -> object:
                    return await stub.GetCustomer(pb.GetCustomerRequest(customer_id=str(picks[i])))

                async def sql_get(i: int) -> object:
                    return await pool.fetchrow("SELECT * FROM customer.customers WHERE id = $1", picks[i])

                async def grpc_list(i: int) -> object:
                    request = pb.ListLoanApplicationsRequest(customer_id=str(picks[i]), page_size=50)
                    return await stub.ListLoanApplications(request)

                async def sql_list(i: int) -> object:
                    return await pool.fetch(
                        "SELECT * FROM customer.loan_applications WHERE customer_id = $1 ORDER BY id DESC LIMIT 51",
                        picks[i],
                    )

                gets = await interleaved(
                    {"GetCustomer via gRPC": grpc_get, "same query on asyncpg": sql_get}, iterations
                )
                lists = await interleaved(
                    {"ListLoanApplications via gRPC": grpc_list, "same query on asyncpg": sql_list}, iterations
                )
        finally:
            await pool.close()
            service.terminate()
            await service.wait()

    lines = [
        f"Data: {CUSTOMERS:,} customers, {CUSTOMERS * APPLICATIONS_PER_CUSTOMER:,} loan applications, "
        f"{BRANCHES} branches. Concurrency 1, {iterations} calls each, interleaved with the direct query.",
        "The customer service runs as its own process (tracing on, exporter none), one asyncpg connection direct.",
        "",
    ]
    for title, pair in (("GetCustomer", gets), ("ListLoanApplications(customer, 50)", lists)):
        via_grpc, direct = pair.values()
        overhead = via_grpc.p50 - direct.p50
        verdict = "meets" if overhead <= 1.0 else "MISSES"
        lines += [
            f"## {title}",
            "",
            "| path | calls | p50 ms | p95 ms | p99 ms |",
            "| --- | --- | --- | --- | --- |",
            via_grpc.row(),
            direct.row(),
            "",
            f"gRPC p50 minus direct p50 = **{overhead:.3f} ms** ({verdict} the ≤ 1.0 ms target).",
            "",
        ]
    return "\n".join(lines)


app = command_line()


@app.command(help=__doc__.splitlines()[0])
def main(iterations: Annotated[int, sized_option("calls timed on each path", 500, 2000)]) -> None:
    run_and_report("customer_reads", run(iterations))


if __name__ == "__main__":
    app()
