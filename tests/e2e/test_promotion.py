"""`loanbook migrate promote` against the running stack and a real Prometheus: it walks the stages on clean traffic,
and stops where it is when DynamoDB's items were tampered with, recording why with the figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioboto3
import asyncpg
import httpx
import pytest

from chassis.identity import Role
from services.customer.demo import APPLICATIONS, CUSTOMERS
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.prometheus import Prometheus, scraping_the_stack
from tests.support.rest import bearer, switch_payments
from tests.support.system import TABLE_PREFIX, RunningSystem, run_module, table_name

DEVON, DEVON_FUNDED_LOAN = str(CUSTOMERS[1].id), str(APPLICATIONS[1][0].id)
# Short windows: Prometheus scrapes every second here; an operator's default is 300 s. No cool-down: the modules
# share one PostgreSQL, where another module's stack may have rolled payments back automatically (DynamoDB Local is
# slow on a loaded machine); the cool-down has its own test (tests/integration/toolkit/test_promotion.py).
FAST = [
    *("--window", "5", "--poll", "1", "--evidence-timeout", "60", "--min-comparisons", "3", "--min-calls", "5"),
    *("--cool-down", "0"),
]
# DynamoDB Local's p99 is no reference for DynamoDB's: the latency guard is shown, not tested, here.
LATENCY_UNJUDGED = ["--max-latency-ratio", "1000"]


@pytest.fixture(scope="module")
async def prometheus(
    running_system: RunningSystem, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    async with scraping_the_stack(running_system, tmp_path_factory.mktemp("prometheus")) as server:
        await server.wait_for("count(up == 1) == 4")
        yield server


@dataclass
class Traffic:
    """Devon recording payments and Casey reading her history through the gateway; every answer counted."""

    writes: int = 0
    reads: int = 0
    failed: int = 0


def payment(customer: str, loan: str) -> dict[str, Any]:
    return {
        "customerId": customer,
        "loanId": loan,
        "amount": {"currencyCode": "USD", "units": "7", "nanos": 0},
        "method": "PAYMENT_METHOD_CARD",
    }


@contextlib.asynccontextmanager
async def customer_traffic(system: RunningSystem) -> AsyncIterator[Traffic]:
    """Casey has a history to read first. Her reads are not the writer's: a customer's reads with a write of hers in
    flight or settling are not compared in shadow (the write explains any difference), so Devon writes."""
    casey, devon = bearer(system, Role.CUSTOMER, CASEY), bearer(system, Role.CUSTOMER, DEVON)
    traffic = Traffic()

    async def record(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> None:
        key = {"Idempotency-Key": f"promotion-e2e-{secrets.token_hex(8)}"}
        recorded = await client.post("/v1/payments", json=body, headers={**headers, **key})
        traffic.writes += 1
        traffic.failed += recorded.status_code != 201

    async def drive(client: httpx.AsyncClient) -> None:
        while True:
            await record(client, devon, payment(DEVON, DEVON_FUNDED_LOAN))
            for _ in range(8):  # reads outnumber writes; 10 % of them are compared in shadow
                history = await client.get(f"/v1/customers/{CASEY}/payments", headers=casey)
                traffic.reads += 1
                traffic.failed += history.status_code != 200
                await asyncio.sleep(0.02)

    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=10) as client:
        for _ in range(5):
            await record(client, casey, payment(CASEY, CASEY_FUNDED_LOAN))
        driver = asyncio.create_task(drive(client))
        try:
            yield traffic
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver


@pytest.fixture
async def payments_restored(running_system: RunningSystem) -> AsyncIterator[None]:
    """The payments table's mode as the module found it, whatever a test moved it to (the stores are shared)."""
    admin = bearer(running_system, Role.ADMIN)
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        listed = await client.get("/v1/admin/migrations", headers=admin)
    modes = [mode for mode in listed.json()["tableModes"] if mode["table"] == "payments"]
    yield
    if modes:
        await switch_payments(running_system, modes[0]["stage"], modes[0]["fallback"], reason="promotion e2e")


async def promote(prometheus: Prometheus, postgres_dsn: str, dynamodb_endpoint: str, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "LOANBOOK_MIGRATION_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT": dynamodb_endpoint,
        "LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX": TABLE_PREFIX,
        "LOANBOOK_MIGRATION_PROMETHEUS_URL": prometheus.url,
        "LOANBOOK_OPERATOR": "promotion-e2e",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    code, out, err = await run_module(
        "toolkit", env, timeout=300, args=["migrate", "promote", "payments", *args], stderr_into_stdout=True
    )
    return code, out + err


async def decisions(postgres_dsn: str) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The latest promotion of payments and its decisions in order."""
    connection = await asyncpg.connect(postgres_dsn)
    try:
        promotion = await connection.fetchrow(
            "SELECT * FROM migration.promotions WHERE table_name = 'payments' ORDER BY id DESC LIMIT 1"
        )
        assert promotion is not None
        rows = await connection.fetch(
            "SELECT * FROM migration.promotion_decisions WHERE promotion_id = $1 ORDER BY id", promotion["id"]
        )
    finally:
        await connection.close()
    return promotion, rows


async def test_a_promotion_walks_to_dynamo_live_on_clean_traffic_with_backfill_and_verification(
    running_system: RunningSystem,
    prometheus: Prometheus,
    postgres_dsn: str,
    dynamodb_endpoint: str,
    payments_restored: None,
) -> None:
    await switch_payments(running_system, "postgres_only", reason="promotion e2e")
    async with customer_traffic(running_system) as traffic:
        code, output = await promote(
            prometheus, postgres_dsn, dynamodb_endpoint, "--to", "dynamo_live", *FAST, *LATENCY_UNJUDGED
        )

    assert code == 0, output
    assert "finished in dynamo_live" in output, output
    promotion, made = await decisions(postgres_dsn)
    assert (promotion["status"], promotion["target_stage"], promotion["started_by"]) == (
        "finished",
        "dynamo_live",
        "promotion-e2e",
    )
    steps = [(row["stage"], row["decision"]) for row in made]
    assert steps == [
        ("postgres_only", "start"),
        ("postgres_only", "advance"),
        ("dual_write", "backfill"),
        ("dual_write", "advance"),
        ("shadow", "verify"),
        ("shadow", "advance"),
        ("dynamo_live", "finish"),
    ], steps
    # The move out of shadow was made on shadow comparisons, none mismatched; the figures are in the audit.
    [out_of_shadow] = [row for row in made if (row["stage"], row["decision"]) == ("shadow", "advance")]
    guards = {guard["guard"]: guard for guard in json.loads(out_of_shadow["figures"])["guards"]}
    assert (guards["shadow_mismatch_ratio"]["value"], guards["shadow_mismatch_ratio"]["holds"]) == (0, True)
    verified = [json.loads(row["figures"]) for row in made if row["decision"] == "verify"]
    assert [(v["missing"], v["extra"], v["differing"], v["incremental"]) for v in verified] == [(0, 0, 0, False)]
    assert (traffic.writes > 0, traffic.reads > 0, traffic.failed) == (True, True, 0), traffic

    # Back to shadow by hand, and promoted again: the full verification above starts the chain, so the check before
    # dynamo_live now compares only the payments written since.
    await switch_payments(running_system, "shadow", reason="promotion e2e")
    async with customer_traffic(running_system) as again:
        code, output = await promote(
            prometheus, postgres_dsn, dynamodb_endpoint, "--to", "dynamo_live", *FAST, *LATENCY_UNJUDGED
        )

    assert code == 0, output
    _, made = await decisions(postgres_dsn)
    assert [(row["stage"], row["decision"]) for row in made] == [
        ("shadow", "start"),
        ("shadow", "verify"),
        ("shadow", "advance"),
        ("dynamo_live", "finish"),
    ]
    [incremental] = [json.loads(row["figures"]) for row in made if row["decision"] == "verify"]
    assert (incremental["incremental"], incremental["missing"], incremental["differing"]) == (True, 0, 0)
    # Every payment recorded since the full verification, and no more than were recorded in all.
    assert 0 < incremental["keys_checked"] <= traffic.writes + again.writes + 5, incremental
    assert again.failed == 0, again


@contextlib.asynccontextmanager
async def tampered_history(dynamodb_endpoint: str) -> AsyncIterator[int]:
    """Casey's payments in DynamoDB with another amount (PostgreSQL untouched); put back as they were on exit."""
    session = aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local")
    async with session.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="eu-west-1") as client:
        originals: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": table_name("payments"),
            "IndexName": "by_customer",
            "KeyConditionExpression": "customer_id = :c",
            "ExpressionAttributeValues": {":c": {"S": CASEY}},
        }
        while True:
            page = await client.query(**request)
            originals.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for item in originals:
            changed = {**item, "amount_minor": {"N": str(int(item["amount_minor"]["N"]) + 1)}}
            await client.put_item(TableName=table_name("payments"), Item=changed)
        try:
            yield len(originals)
        finally:
            for item in originals:
                await client.put_item(TableName=table_name("payments"), Item=item)


async def test_a_promotion_stops_in_shadow_on_tampered_items_and_records_the_breach(
    running_system: RunningSystem,
    prometheus: Prometheus,
    postgres_dsn: str,
    dynamodb_endpoint: str,
    payments_restored: None,
) -> None:
    await switch_payments(running_system, "postgres_only", reason="promotion e2e")
    async with customer_traffic(running_system) as traffic:
        code, output = await promote(
            prometheus, postgres_dsn, dynamodb_endpoint, "--to", "shadow", *FAST, *LATENCY_UNJUDGED
        )
        assert code == 0, output
        async with tampered_history(dynamodb_endpoint) as tampered:
            code, output = await promote(
                prometheus, postgres_dsn, dynamodb_endpoint, "--to", "dynamo_live", *FAST, *LATENCY_UNJUDGED
            )

    assert tampered > 0
    assert code == 1, output
    assert "stopped in shadow" in output, output
    assert "shadow_mismatch_ratio" in output, output
    promotion, made = await decisions(postgres_dsn)
    assert promotion["status"] == "stopped", output
    assert "shadow_mismatch_ratio" in promotion["outcome"], output
    assert [row["decision"] for row in made] == ["start", "breach", "stop"]
    breach = {guard["guard"]: guard for guard in json.loads(made[1]["figures"])["guards"]}
    assert breach["shadow_mismatch_ratio"]["holds"] is False
    assert breach["shadow_mismatch_ratio"]["value"] > 0
    # Nothing moved: the table is where the breach found it, and every request was still answered.
    admin = bearer(running_system, Role.ADMIN)
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        listed = await client.get("/v1/admin/migrations", headers=admin)
    [payments] = [mode for mode in listed.json()["tableModes"] if mode["table"] == "payments"]
    assert payments["stage"] == "shadow"
    assert traffic.failed == 0, traffic
