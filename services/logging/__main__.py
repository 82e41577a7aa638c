"""Runs the logging service: `python -m services.logging`."""

from chassis.service_main import run_service
from services.logging.bootstrap import bootstrap
from services.logging.config import LoggingSettings

if __name__ == "__main__":
    run_service("logging", LoggingSettings, bootstrap)
