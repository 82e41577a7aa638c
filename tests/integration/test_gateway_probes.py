"""The gateway's probes over real gRPC health: /readyz names the downstream that is not SERVING, /livez does not ask."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from chassis.config import GrpcServiceSettings
from chassis.grpc_server import NOT_SERVING, SERVING, GrpcServer, ReadinessCheck, ServiceBinding
from gateway.app import create_app
from gateway.config import GatewaySettings
from tests.support.grpc import health_becomes


@dataclass
class Store:
    up: bool = True

    async def probe(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("store down")


@dataclass
class Probed:
    client: httpx.AsyncClient
    payment_store: Store
    payment: GrpcServer


@pytest.fixture
async def probed() -> AsyncIterator[Probed]:
    settings = GrpcServiceSettings(grpc_port=0, health_check_interval_seconds=0.05)
    store = Store()
    servers = {
        name: GrpcServer(settings, [ServiceBinding(f"loanbook.test.v1.{name}", lambda server: None, readiness)])
        for name, readiness in (
            ("customer", []),
            ("payment", [ReadinessCheck("postgresql", store.probe)]),
            ("logging", []),
        )
    }
    for server in servers.values():
        await server.start()
    gateway = GatewaySettings(
        customer_addr=servers["customer"].address,
        payment_addr=servers["payment"].address,
        logging_addr=servers["logging"].address,
        environment="test",
        jwt_secret="integration-secret-that-is-long-enough-for-hs256",
    )
    app = create_app(gateway)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield Probed(client, store, servers["payment"])
    finally:
        for server in servers.values():
            await server.stop(grace=0)


async def test_readyz_is_503_naming_the_downstream_that_is_not_serving_while_livez_stays_200(probed: Probed) -> None:
    ready = await probed.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "services": dict.fromkeys(("customer", "payment", "logging"), "SERVING")}

    probed.payment_store.up = False
    await health_becomes(probed.payment.address, "", NOT_SERVING)

    not_ready = await probed.client.get("/readyz")
    assert not_ready.status_code == 503
    error = not_ready.json()["error"]
    assert error["code"] == "UNAVAILABLE"
    assert error["message"] == "not ready: payment (NOT_SERVING)"
    assert {"service": "payment", "status": "NOT_SERVING"} in error["details"]
    for path in ("/livez", "/healthz"):
        live = await probed.client.get(path)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})

    probed.payment_store.up = True
    await health_becomes(probed.payment.address, "", SERVING)

    assert (await probed.client.get("/readyz")).status_code == 200
