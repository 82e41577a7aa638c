"""Runs the gateway: `loanbook-gateway` or `python -m gateway`."""

from __future__ import annotations

import signal
import sys

import uvicorn

from chassis.config import ConfigurationError, load_settings
from chassis.structured_logging import configure_logging
from chassis.telemetry import configure_telemetry, metrics_endpoint
from gateway.app import create_app
from gateway.config import GatewaySettings


def main() -> None:
    try:
        settings = load_settings(GatewaySettings)
    except ConfigurationError as error:
        print(f"loanbook-gateway: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging("loanbook-gateway", settings.log_level, json_lines=settings.log_json)
    try:
        telemetry = configure_telemetry(
            "loanbook-gateway",
            environment=settings.environment.value,
            metrics_endpoint=metrics_endpoint(settings),
        )
    except ConfigurationError as error:
        print(f"loanbook-gateway: {error}", file=sys.stderr)
        sys.exit(2)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            http="httptools",  # uvicorn's default would quietly fall back to the much slower pure-Python h11
            log_config=None,  # keep our structured logging
            access_log=False,  # gateway.access logs each request once, without query strings
            server_header=False,
            timeout_keep_alive=settings.http_keep_alive_seconds,
            timeout_graceful_shutdown=10,
        )
    )
    # uvicorn drains connections on SIGTERM/SIGINT and then re-raises the signal with the handler that was
    # installed before it started; a no-op handler there makes a graceful stop exit 0, like the services.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        server.run()
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    main()
