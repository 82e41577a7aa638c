"""The three services and the gateway start on the shared chassis, report health, trace and stop cleanly."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from chassis.identity import Role
from devstack.processes import free_port
from devstack.supervisor import http_ok
from services.customer.bootstrap import SERVICE_NAME as CUSTOMER_SERVICE
from services.logging.bootstrap import SERVICE_NAME as LOGGING_SERVICE
from services.payment.bootstrap import SERVICE_NAME as PAYMENT_SERVICE
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.rest import bearer
from tests.support.system import RunningSystem, run_module, start_process

SERVICE_NAMES = {"customer": CUSTOMER_SERVICE, "payment": PAYMENT_SERVICE, "logging": LOGGING_SERVICE}


async def test_every_service_reports_serving_for_itself_and_its_grpc_service(running_system: RunningSystem) -> None:
    for name, address in running_system.grpc_addresses.items():
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", SERVICE_NAMES[name]):
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                assert response.status == health_pb2.HealthCheckResponse.SERVING, (name, service)


async def test_gateway_is_live_and_ready_when_every_downstream_serves(running_system: RunningSystem) -> None:
    async with httpx.AsyncClient(base_url=running_system.gateway_url) as client:
        live = await client.get("/healthz")
        ready = await client.get("/readyz")

    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "services": {"customer": "SERVING", "payment": "SERVING", "logging": "SERVING"},
    }


async def test_one_gateway_request_is_one_trace_across_the_processes_it_reaches(
    running_system: RunningSystem,
) -> None:
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = {
        **bearer(running_system, Role.OFFICER),
        "traceparent": f"00-{trace_id}-{caller_span_id}-01",
        "Idempotency-Key": f"trace-{secrets.token_hex(8)}",
    }
    payment = {
        "customerId": CASEY,
        "loanId": CASEY_FUNDED_LOAN,
        "amount": {"currencyCode": "USD", "units": "10"},
        "method": "PAYMENT_METHOD_CARD",
    }
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        response = await client.post("/v1/payments", json=payment, headers=headers)
    assert response.status_code == 201, response.text

    # Each process's server span ends after every other span it makes, so once those three are in, all are.
    outermost = {
        ("loanbook-gateway", "POST /v1/payments"),
        ("loanbook-payment", "/loanbook.payment.v1.PaymentService/RecordPayment"),
        ("loanbook-customer", "/loanbook.customer.v1.CustomerService/CheckLoanStanding"),
    }
    await running_system.receiver.wait_until(
        lambda received: outermost <= {(s.service_name, s.name) for s in received if s.trace_id == trace_id},
        timeout=15,
    )
    spans = [span for span in running_system.receiver.spans if span.trace_id == trace_id]

    by_id = {span.span_id: span for span in spans}
    gateway_root = [s for s in spans if s.service_name == "loanbook-gateway" and s.parent_span_id == caller_span_id]
    assert len(gateway_root) == 1, spans
    assert gateway_root[0].kind == trace_pb2.Span.SPAN_KIND_SERVER
    # Every span except the gateway's root has its parent inside this same trace.
    for span in spans:
        if span is not gateway_root[0]:
            assert span.parent_span_id in by_id, f"{span.service_name}/{span.name} lost its parent"
    # gateway -> payment -> customer, each server span under its caller's client span.
    for service, method, caller in (
        ("payment", "/loanbook.payment.v1.PaymentService/RecordPayment", "loanbook-gateway"),
        ("customer", "/loanbook.customer.v1.CustomerService/CheckLoanStanding", "loanbook-payment"),
    ):
        server_spans = [s for s in spans if s.service_name == f"loanbook-{service}" and s.name == method]
        assert len(server_spans) == 1, (service, spans)
        parent = by_id[server_spans[0].parent_span_id]
        assert parent.service_name == caller
        assert parent.kind == trace_pb2.Span.SPAN_KIND_CLIENT


async def test_gateway_readiness_names_a_downstream_that_does_not_serve(
    running_system: RunningSystem, tmp_path: Path
) -> None:
    port = free_port()
    app = running_system.apps["gateway"]
    env = {
        **app.env,
        "LOANBOOK_GATEWAY_HTTP_PORT": str(port),
        "LOANBOOK_GATEWAY_PAYMENT_ADDR": f"127.0.0.1:{free_port()}",  # nothing listens there
        "LOANBOOK_GATEWAY_METRICS_PORT": "0",  # the running gateway holds its own
        "OTEL_TRACES_EXPORTER": "none",
    }
    gateway = await start_process("gateway-degraded", app.argv, env, tmp_path)
    try:
        await gateway.wait_until_ready(http_ok(f"http://127.0.0.1:{port}/healthz"))
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        assert await gateway.terminate() == 0

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "UNAVAILABLE"
    assert "payment (UNAVAILABLE)" in error["message"]
    assert "customer" not in error["message"]


# Runs after the tests above that share the module's processes (pytest keeps file order): it stops them.
async def test_sigterm_stops_every_process_cleanly(running_system: RunningSystem) -> None:
    for name in ("gateway", "payment", "logging", "customer"):
        running = running_system.processes[name]
        assert await running.terminate() == 0, running.log()
        assert "Traceback" not in running.log(), running.log()


async def test_a_service_with_a_bad_setting_exits_naming_it() -> None:
    env = {**os.environ, "LOANBOOK_CUSTOMER_GRPC_PORT": "not-a-port", "LOANBOOK_CUSTOMER_POSTGRES_DSN": "x"}
    code, output, _ = await run_module("services.customer", env, stderr_into_stdout=True)

    assert code == 2
    assert "LOANBOOK_CUSTOMER_GRPC_PORT: Input should be a valid integer" in output


async def test_a_service_whose_postgres_is_down_exits_with_a_clear_error() -> None:
    dsn = f"postgresql://loanbook:secret-password@127.0.0.1:{free_port()}/loanbook"
    env = {**os.environ, "LOANBOOK_CUSTOMER_GRPC_PORT": "0", "LOANBOOK_CUSTOMER_POSTGRES_DSN": dsn}
    code, output, _ = await run_module("services.customer", env, stderr_into_stdout=True)

    assert code == 3
    assert "PostgreSQL unreachable" in output
    assert "secret-password" not in output
