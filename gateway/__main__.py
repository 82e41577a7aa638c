"""Runs the gateway: `loanbook-gateway` or `python -m gateway`."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable

import uvicorn

from chassis.config import ConfigurationError, load_settings
from chassis.structured_logging import configure_logging
from chassis.telemetry import configure_telemetry, metrics_endpoint
from chassis.workers import Worker, reuse_port_socket, supervise
from gateway.app import create_app
from gateway.config import GatewaySettings

# In-flight requests get this long after SIGTERM; workers still running a little later are killed.
GRACEFUL_SHUTDOWN_SECONDS = 10
STOP_MARGIN_SECONDS = 5.0


class _ReportingServer(uvicorn.Server):
    """A uvicorn server that says when it accepts connections (a worker reports it to its supervisor)."""

    def __init__(self, config: uvicorn.Config, on_serving: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_serving = on_serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_serving()


def main() -> None:
    try:
        settings = load_settings(GatewaySettings)
    except ConfigurationError as error:
        print(f"loanbook-gateway: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging("loanbook-gateway", settings.log_level, json_lines=settings.log_json)
    if settings.workers == 1:
        sys.exit(serve_process(settings))

    def worker_main(worker: Worker) -> int:
        return serve_process(settings, worker)

    try:
        code = supervise(
            settings.workers,
            host=settings.http_host,
            port=settings.http_port,
            setting="LOANBOOK_GATEWAY_HTTP_PORT",
            main=worker_main,
            stop_timeout_seconds=GRACEFUL_SHUTDOWN_SECONDS + STOP_MARGIN_SECONDS,
        )
    except ConfigurationError as error:
        print(f"loanbook-gateway: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


def serve_process(settings: GatewaySettings, worker: Worker | None = None) -> int:
    """Serves HTTP in this process (the only one, or a worker on the supervisor's port) until signalled."""
    try:
        telemetry = configure_telemetry(
            "loanbook-gateway",
            environment=settings.environment.value,
            metrics_endpoint=metrics_endpoint(settings),
            worker=None if worker is None else worker.index,
        )
    except ConfigurationError as error:
        print(f"loanbook-gateway: {error}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        http="httptools",  # uvicorn's default would quietly fall back to the much slower pure-Python h11
        log_config=None,  # keep our structured logging
        access_log=False,  # gateway.access logs each request once, without query strings
        server_header=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    # uvicorn drains connections on SIGTERM/SIGINT and then re-raises the signal with the handler that was
    # installed before it started; a no-op handler there makes a graceful stop exit 0, like the services.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        if worker is None:
            uvicorn.Server(config).run()
        else:
            # Each worker listens on a socket of its own on the one port: the kernel spreads connections evenly,
            # where one shared listening socket lets the least busy worker's event loop take most of them.
            sock = reuse_port_socket(settings.http_host, worker.port)
            _ReportingServer(config, worker.ready).run(sockets=[sock])
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    main()
