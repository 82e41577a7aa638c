"""A real Prometheus scrapes the running stack with the project's rules: latency by backend across two stages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from chassis.identity import Role
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.prometheus import Prometheus, scraping_the_stack
from tests.support.rest import bearer, switch_payments
from tests.support.system import TABLE_PREFIX, RunningSystem, run_module

P99 = "table_operation_backend:db_client_operation_duration_seconds:p99_5m"


@pytest.fixture(scope="module")
async def prometheus(
    running_system: RunningSystem, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Prometheus]:
    async with scraping_the_stack(running_system, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@contextlib.asynccontextmanager
async def payment_traffic(system: RunningSystem) -> AsyncIterator[None]:
    """Customers recording and reading payments through the gateway, until the block ends."""
    casey = bearer(system, Role.CUSTOMER, CASEY)
    body = {
        "customerId": CASEY,
        "loanId": CASEY_FUNDED_LOAN,
        "amount": {"currencyCode": "USD", "units": "12", "nanos": 0},
        "method": "PAYMENT_METHOD_CARD",
    }

    async def drive(client: httpx.AsyncClient) -> None:
        while True:
            key = {"Idempotency-Key": f"prometheus-e2e-{secrets.token_hex(8)}"}
            recorded = await client.post("/v1/payments", json=body, headers={**casey, **key})
            assert recorded.status_code == 201, recorded.text
            history = await client.get(f"/v1/customers/{CASEY}/payments", headers=casey)
            assert history.status_code == 200, history.text
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=system.gateway_url, timeout=10) as client:
        driver = asyncio.create_task(drive(client))
        try:
            yield
        finally:
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver


async def test_every_process_is_scraped(prometheus: Prometheus) -> None:
    up = await prometheus.wait_for("count(up == 1) == 4")

    assert float(up[0]["value"][1]) == 4


async def test_latency_by_backend_reads_through_the_recording_rule_across_two_stages(
    running_system: RunningSystem, prometheus: Prometheus, postgres_dsn: str, dynamodb_endpoint: str
) -> None:
    payments = 'db_collection_name="payments"'
    before = await switch_payments(running_system, "postgres_only", reason="prometheus e2e")
    try:
        async with payment_traffic(running_system):
            # postgres_only: PostgreSQL serves and stores everything; DynamoDB is not called.
            for operation in ("create", "list_for_customer"):
                postgres = f'{payments}, db_operation_name="{operation}", loanbook_store_backend="postgres"'
                await prometheus.wait_for(f"{P99}{{{postgres}}} > 0")
            assert await prometheus.query(f'{P99}{{{payments}, loanbook_store_backend="dynamodb"}}') == []

            # dual_write: each write is copied to DynamoDB on the request path; the copies' latency shows.
            await switch_payments(running_system, "dual_write", reason="prometheus e2e")
            copies = await prometheus.wait_for(f'{P99}{{{payments}, loanbook_store_backend="dynamodb"}} > 0')
            assert all(series["value"][1] != "NaN" for series in copies)
            # The stage change itself, as the dashboard's annotations read it.
            await prometheus.wait_for(f"changes(table:loanbook_migration_stage_index:max{{{payments}}}[5m]) > 0")

            env = {
                **os.environ,
                "LOANBOOK_MIGRATION_POSTGRES_DSN": postgres_dsn,
                "LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT": dynamodb_endpoint,
                "LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX": TABLE_PREFIX,
                "LOANBOOK_MIGRATION_PROMETHEUS_URL": prometheus.url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
            }
            code, out, err = await run_module("toolkit", env, args=["migrate", "status", "payments"])
    finally:
        await switch_payments(running_system, before["stage"], before["fallback"], reason="prometheus e2e")

    assert code == 0, err
    [latency] = [line for line in out.splitlines() if line.strip().startswith("latency")]
    assert "postgres p50" in latency
    assert "dynamodb p50" in latency


async def test_the_projects_rules_are_loaded_and_none_fires_on_a_healthy_stack(prometheus: Prometheus) -> None:
    await prometheus.wait_for("count(up == 1) == 4")
    rules = await prometheus.rules()

    alerts = {rule["name"]: rule for rule in rules if rule["type"] == "alerting"}
    assert {"LoanbookStoreFallbacks", "LoanbookDynamoDBBreakerOpen", "LoanbookShadowMismatch"} <= set(alerts)
    assert all(rule["health"] != "err" for rule in rules), [r for r in rules if r["health"] == "err"]
    assert [name for name, rule in alerts.items() if rule["state"] == "firing"] == []
