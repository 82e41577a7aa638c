"""Runs the logging service: `loanbook-logging` or `python -m services.logging`."""

from chassis.service_main import run_service
from services.logging.bootstrap import bootstrap
from services.logging.config import LoggingSettings


def main() -> None:
    # The hybrid store traces every store call itself, as in the payment service (see services/payment/__main__.py).
    run_service("logging", LoggingSettings, bootstrap, trace_store_clients=False)


if __name__ == "__main__":
    main()
