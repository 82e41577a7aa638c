"""The one way a loanbook gRPC service process starts: settings, logging, tracing, stores, server, shutdown."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TypeVar

import uvloop

from chassis.config import ConfigurationError, GrpcServiceSettings, load_settings
from chassis.grpc_client import create_channel
from chassis.grpc_server import GrpcServer, ServiceBinding
from chassis.log_shipping import grpc_sink, ship_logs
from chassis.stores import StoreUnavailable
from chassis.structured_logging import configure_logging
from chassis.telemetry import configure_telemetry, metrics_endpoint

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)

# Builds a service's dependencies inside the exit stack (so they close in reverse order) and returns
# the gRPC services to serve. This is each service's composition root.
Bootstrap = Callable[[SettingsT, AsyncExitStack], Awaitable[Sequence[ServiceBinding]]]

EXIT_CONFIGURATION = 2
EXIT_STORE_UNAVAILABLE = 3


async def serve(settings: SettingsT, bootstrap: Bootstrap[SettingsT], name: str = "service") -> None:
    async with AsyncExitStack() as stack:
        if settings.log_shipping_addr is not None:
            # First in, last out: the shipper outlives the service's own shutdown lines (best effort).
            channel = create_channel(settings.log_shipping_addr, settings)
            stack.push_async_callback(channel.close)
            await ship_logs(
                name,
                grpc_sink(channel, name),
                stack,
                capacity=settings.log_shipping_capacity,
                level=logging.getLevelName(settings.log_level),
            )
        services = await bootstrap(settings, stack)
        await GrpcServer(settings, services).serve_until_signalled()


def run_service(
    name: str, settings_type: type[SettingsT], bootstrap: Bootstrap[SettingsT], *, trace_store_clients: bool = True
) -> None:
    """Entry point of `python -m services.<name>`: exits 2 on bad configuration, 3 when a store is down.

    `trace_store_clients=False` for services whose stores trace each call themselves (see configure_telemetry).
    """
    try:
        settings = load_settings(settings_type)
    except ConfigurationError as error:
        print(f"loanbook-{name}: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    configure_logging(f"loanbook-{name}", settings.log_level, json_lines=settings.log_json)
    try:
        telemetry = configure_telemetry(
            f"loanbook-{name}",
            environment=settings.environment.value,
            metrics_endpoint=metrics_endpoint(settings),
            trace_store_clients=trace_store_clients,
        )
    except ConfigurationError as error:
        print(f"loanbook-{name}: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    try:
        # uvloop: measured 0.16 ms off the p50 of a 50-payment history page (bench/payment_history.py).
        uvloop.run(serve(settings, bootstrap, f"loanbook-{name}"))
    except StoreUnavailable as error:
        logger.error("cannot start: %s", error)
        sys.exit(EXIT_STORE_UNAVAILABLE)
    except ConfigurationError as error:  # found at start-up, e.g. a DynamoDB table managed as code is missing
        logger.error("cannot start: %s", error)
        sys.exit(EXIT_CONFIGURATION)
    finally:
        telemetry.shutdown()
