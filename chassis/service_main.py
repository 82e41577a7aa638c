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
from chassis.workers import Worker, supervise

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=GrpcServiceSettings)

# Builds a service's dependencies inside the exit stack (so they close in reverse order) and returns
# the gRPC services to serve. This is each service's composition root.
Bootstrap = Callable[[SettingsT, AsyncExitStack], Awaitable[Sequence[ServiceBinding]]]

EXIT_CONFIGURATION = 2
EXIT_STORE_UNAVAILABLE = 3
# Workers get the shutdown grace and this much more to exit after SIGTERM before the supervisor kills them.
STOP_MARGIN_SECONDS = 5.0


async def serve(
    settings: SettingsT,
    bootstrap: Bootstrap[SettingsT],
    name: str = "service",
    *,
    on_serving: Callable[[], None] | None = None,
) -> None:
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
        await GrpcServer(settings, services).serve_until_signalled(on_serving=on_serving)


def run_service(
    name: str, settings_type: type[SettingsT], bootstrap: Bootstrap[SettingsT], *, trace_store_clients: bool = True
) -> None:
    """Entry point of `python -m services.<name>`: exits 2 on bad configuration, 3 when a store is down.

    `trace_store_clients=False` for services whose stores trace each call themselves (see configure_telemetry).
    With `…_WORKERS` above 1 this process supervises that many forked workers on one port (chassis.workers) and
    exits with the first failing worker's code.
    """
    try:
        settings = load_settings(settings_type)
    except ConfigurationError as error:
        print(f"loanbook-{name}: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    configure_logging(f"loanbook-{name}", settings.log_level, json_lines=settings.log_json)
    if settings.workers == 1:
        code = serve_process(name, settings, bootstrap, trace_store_clients=trace_store_clients)
        if code:
            sys.exit(code)
        return

    def worker_main(worker: Worker) -> int:
        # The port the supervisor reserved (a configured 0 is resolved once, for every worker).
        worker_settings = settings.model_copy(update={"grpc_port": worker.port})
        return serve_process(name, worker_settings, bootstrap, trace_store_clients=trace_store_clients, worker=worker)

    try:
        code = supervise(
            settings.workers,
            host=settings.grpc_host,
            port=settings.grpc_port,
            setting=f"{settings.model_config.get('env_prefix', '')}GRPC_PORT",
            main=worker_main,
            stop_timeout_seconds=settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS,
        )
    except ConfigurationError as error:
        print(f"loanbook-{name}: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    sys.exit(code)


def serve_process(
    name: str,
    settings: SettingsT,
    bootstrap: Bootstrap[SettingsT],
    *,
    trace_store_clients: bool,
    worker: Worker | None = None,
) -> int:
    """Runs one serving process (the only one, or a worker) until it is signalled; its exit code."""
    try:
        telemetry = configure_telemetry(
            f"loanbook-{name}",
            environment=settings.environment.value,
            metrics_endpoint=metrics_endpoint(settings),
            trace_store_clients=trace_store_clients,
            worker=None if worker is None else worker.index,
        )
    except ConfigurationError as error:
        print(f"loanbook-{name}: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    try:
        # uvloop: measured 0.16 ms off the p50 of a 50-payment history page (bench/payment_history.py).
        uvloop.run(serve(settings, bootstrap, f"loanbook-{name}", on_serving=None if worker is None else worker.ready))
    except StoreUnavailable as error:
        logger.error("cannot start: %s", error)
        return EXIT_STORE_UNAVAILABLE
    except ConfigurationError as error:  # found at start-up, e.g. a DynamoDB table managed as code is missing
        logger.error("cannot start: %s", error)
        return EXIT_CONFIGURATION
    finally:
        telemetry.shutdown()
    return 0
