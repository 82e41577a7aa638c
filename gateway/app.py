"""The FastAPI application: one gRPC channel per downstream service, created at start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

import grpc
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from chassis.grpc_client import Rotating, create_channels
from chassis.log_shipping import grpc_sink, ship_logs
from gateway.auth import TokenVerifier
from gateway.config import GatewaySettings
from gateway.customer_models import ErrorBody
from gateway.customer_routes import router as customer_router
from gateway.dependencies import CustomerService, LoggingService, MigrationService, PaymentService
from gateway.errors import error_response, install_error_handlers
from gateway.logging_routes import router as logging_router
from gateway.logging_routes import write_router as log_writing_router
from gateway.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    QueryStringRestored,
    TraceIdMiddleware,
    hide_query_string_from_instrumentation,
)
from gateway.migration_routes import router as migration_router
from gateway.payment_routes import router as payment_router
from loanbook.customer.v1 import customer_pb2_grpc
from loanbook.logging.v1 import logging_pb2_grpc
from loanbook.migration.v1 import migration_pb2_grpc
from loanbook.payment.v1 import payment_pb2_grpc

Stub = TypeVar("Stub")

# Anchored on the whole URL (scheme://host/path, no query string) so no other route can match them.
PROBE_URLS = ",".join(f"^[a-z]+://[^/]+/{path}$" for path in ("livez", "healthz", "readyz", "metrics"))


@dataclass
class Downstreams:
    """The gateway's gRPC channels, by service name: `channels` one per service (health checks, log shipping),
    `pools` all of each service's (see GatewaySettings.upstream_connections)."""

    pools: dict[str, list[grpc.aio.Channel]]

    @property
    def channels(self) -> dict[str, grpc.aio.Channel]:
        return {name: pool[0] for name, pool in self.pools.items()}

    def stubs(self, name: str, stub: Callable[[grpc.aio.Channel], Stub]) -> Stub:
        """One stub that puts each call on the next of the service's connections."""
        return cast(Stub, Rotating([stub(channel) for channel in self.pools[name]]))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for pool in self.pools.values() for channel in pool))


async def downstreams(request: Request) -> Downstreams:
    result: Downstreams = request.app.state.downstreams
    return result


async def _health_of(name: str, channel: grpc.aio.Channel, deadline_seconds: float) -> tuple[str, str]:
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=deadline_seconds)
    except grpc.aio.AioRpcError as error:
        return name, error.code().name
    return name, health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway, traced: W3C `traceparent` is honoured and every response names its trace in X-Trace-Id."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connections = settings.upstream_connections
        app.state.downstreams = services = Downstreams(
            {
                "customer": create_channels(settings.customer_addr, settings, connections),
                "payment": create_channels(settings.payment_addr, settings, connections),
                "logging": create_channels(settings.logging_addr, settings, connections),
            }
        )
        deadline = settings.grpc_deadline_seconds
        app.state.customer_service = CustomerService(
            services.stubs("customer", customer_pb2_grpc.CustomerServiceStub), deadline
        )
        app.state.payment_service = PaymentService(
            services.stubs("payment", payment_pb2_grpc.PaymentServiceStub), deadline
        )
        app.state.logging_service = LoggingService(
            services.stubs("logging", logging_pb2_grpc.LoggingServiceStub), deadline
        )
        # The payment service serves the migration control plane (it holds the control plane's connection).
        app.state.migration_service = MigrationService(
            services.stubs("payment", migration_pb2_grpc.MigrationServiceStub), deadline
        )
        async with AsyncExitStack() as stack:
            stack.push_async_callback(app.state.downstreams.close)
            if settings.ship_own_logs:
                # Pushed after the channels, so it stops (flushing its queue) while the logging channel is open.
                await ship_logs(
                    "loanbook-gateway",
                    grpc_sink(services.channels["logging"], "loanbook-gateway"),
                    stack,
                    level=logging.getLevelName(settings.log_level),
                )
            yield

    app = FastAPI(
        title="loanbook gateway",
        version="1",
        lifespan=lifespan,
        description="REST/JSON in front of the loanbook gRPC services. Bodies use protobuf's canonical JSON "
        "mapping (lowerCamelCase; int64 as strings in responses). Every failure is "
        '`{"error": {"code", "message", "details"}}`; every response carries `X-Trace-Id`.',
    )
    app.state.token_verifier = TokenVerifier(settings)
    install_error_handlers(app)
    # Added innermost first: the access log sees every status, including 413s and the trace id stamp.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TraceIdMiddleware)
    app.add_middleware(AccessLogMiddleware)
    # Outermost of the gateway's own: gives the routes back the query string hidden from the instrumentation below.
    app.add_middleware(QueryStringRestored)
    app.include_router(customer_router)
    app.include_router(payment_router)
    app.include_router(log_writing_router)
    app.include_router(logging_router)
    app.include_router(migration_router)

    @app.get("/livez", tags=["operations"], summary="Liveness: the gateway process answers")
    @app.get("/healthz", tags=["operations"], summary="Liveness (the same as /livez)")
    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: every downstream gRPC service is SERVING",
        responses={
            503: {
                "model": ErrorBody,
                "description": "Not ready (UNAVAILABLE): `details` holds each service's health status",
            }
        },
    )
    async def readyz(services: Annotated[Downstreams, Depends(downstreams)]) -> JSONResponse:
        results = dict(
            await asyncio.gather(
                *(
                    _health_of(name, channel, settings.readiness_timeout_seconds)
                    for name, channel in services.channels.items()
                )
            )
        )
        not_serving = {name: status for name, status in results.items() if status != "SERVING"}
        if not_serving:
            names = ", ".join(f"{name} ({status})" for name, status in sorted(not_serving.items()))
            return error_response(
                grpc.StatusCode.UNAVAILABLE,
                f"not ready: {names}",
                [{"service": name, "status": status} for name, status in sorted(results.items())],
            )
        return JSONResponse({"status": "ready", "services": results})

    app.openapi = _without_validation_error_responses(app)  # type: ignore[method-assign]  # FastAPI's documented hook

    # Wraps the whole stack (outside the middlewares above), so the request's span is current in all of them.
    # Without the per-message `send`/`receive` child spans: two extra spans a request cost the gateway real time
    # (bench/gateway_overhead.py) and say nothing the server span does not.
    # Probes are not requests worth a trace (one every few seconds from each prober). The query string never reaches
    # the instrumentation: page tokens, trace ids and filters stay out of span attributes and metrics.
    FastAPIInstrumentor.instrument_app(app, excluded_urls=PROBE_URLS, exclude_spans=["receive", "send"])
    hide_query_string_from_instrumentation(app)
    return app


def _without_validation_error_responses(app: FastAPI) -> Any:
    """FastAPI's document, less the 422 it adds to every route with input: the gateway answers bad input with 400
    and the error body (gateway/errors.py), and every route declares that 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for item in document["paths"].values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
