"""Every process serves metrics naming itself, and the OTEL_* variables behave as the OpenTelemetry spec says."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from chassis.identity import Role
from devstack.processes import free_port
from devstack.supervisor import grpc_health
from tests.support.demo import CASEY
from tests.support.rest import bearer
from tests.support.system import RunningSystem, run_module, start_process

PROCESSES = ("customer", "payment", "logging", "gateway")


async def test_every_process_serves_prometheus_metrics_naming_itself_its_version_and_environment(
    running_system: RunningSystem,
) -> None:
    casey = bearer(running_system, Role.CUSTOMER, CASEY)
    async with httpx.AsyncClient() as client:
        # One request through every process (the services ship their log lines to logging): each has measured.
        history = await client.get(f"{running_system.gateway_url}/v1/customers/{CASEY}/payments", headers=casey)
        assert history.status_code == 200, history.text
        for name in PROCESSES:
            response = await client.get(f"http://127.0.0.1:{running_system.ports.metrics_port(name)}/metrics")
            assert response.status_code == 200, name
            [target_info] = [line for line in response.text.splitlines() if line.startswith("target_info{")]
            assert f'service_name="loanbook-{name}"' in target_info
            assert 'deployment_environment="development"' in target_info
            assert 'service_version="' in target_info


async def test_metrics_are_pushed_over_otlp_too(running_system: RunningSystem) -> None:
    casey = bearer(running_system, Role.CUSTOMER, CASEY)
    async with httpx.AsyncClient(base_url=running_system.gateway_url) as client:
        assert (await client.get(f"/v1/customers/{CASEY}/payments", headers=casey)).status_code == 200

    await running_system.receiver.metrics.wait_for("loanbook-payment", "rpc.server.duration", timeout=15)
    await running_system.receiver.metrics.wait_for("loanbook-gateway", "http.server.request.duration", timeout=15)


async def test_the_gateway_measures_its_requests_by_route_without_query_strings(running_system: RunningSystem) -> None:
    async with httpx.AsyncClient(base_url=running_system.gateway_url) as client:
        await client.get("/v1/customers/not-an-id", params={"pageToken": "secret-token"})
        metrics = await client.get(f"http://127.0.0.1:{running_system.ports.metrics_port('gateway')}/metrics")

    durations = [line for line in metrics.text.splitlines() if line.startswith("http_server_request_duration_seconds")]
    assert any('http_route="/v1/customers/{id}"' in line for line in durations), durations[:5]
    assert "secret-token" not in metrics.text


@pytest.mark.parametrize(
    ("variable", "value"),
    [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_METRICS_EXPORTER", "x")],
)
async def test_an_otel_setting_that_cannot_be_honoured_exits_2_naming_it(variable: str, value: str) -> None:
    dsn = "postgresql://loanbook:secret-password@127.0.0.1:9/loanbook"
    env = {**os.environ, "LOANBOOK_CUSTOMER_POSTGRES_DSN": dsn, variable: value}
    if variable == "OTEL_EXPORTER_OTLP_PROTOCOL":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4318"

    service = await run_module("services.customer", env, stderr_into_stdout=True)
    command = await run_module("toolkit", {**env, "LOANBOOK_MIGRATION_POSTGRES_DSN": dsn}, args=["migrate", "status"])

    assert service[0] == 2
    assert variable in service[1]
    assert (command[0], variable in command[2]) == (2, True)


async def test_otlp_over_http_and_several_trace_exporters_are_supported(postgres_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOANBOOK_CUSTOMER_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_CUSTOMER_GRPC_PORT": str(port),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nobody listens: export just fails
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp,console",
    }
    running = await start_process("customer", [sys.executable, "-m", "services.customer"], env, tmp_path)
    try:
        await running.wait_until_ready(grpc_health(f"127.0.0.1:{port}"))
    finally:
        assert await running.terminate() == 0, running.log()
    assert "Traceback" not in running.log()
