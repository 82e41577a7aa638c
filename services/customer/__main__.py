"""Runs the customer service: `python -m services.customer`."""

from chassis.service_main import run_service
from services.customer.bootstrap import bootstrap
from services.customer.config import CustomerSettings

if __name__ == "__main__":
    run_service("customer", CustomerSettings, bootstrap)
