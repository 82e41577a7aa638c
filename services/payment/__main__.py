"""Runs the payment service: `python -m services.payment`."""

from chassis.service_main import run_service
from services.payment.bootstrap import bootstrap
from services.payment.config import PaymentSettings

if __name__ == "__main__":
    run_service("payment", PaymentSettings, bootstrap)
