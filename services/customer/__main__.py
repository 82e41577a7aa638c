"""Runs the customer service: `loanbook-customer` or `python -m services.customer`."""

from chassis.service_main import run_service
from services.customer.bootstrap import bootstrap
from services.customer.config import CustomerSettings


def main() -> None:
    # The repository traces each call itself (services/customer/adapters/postgres.py): the asyncpg instrumentation
    # records the driver's error text on its spans, and PostgreSQL's DETAIL in it quotes stored values.
    run_service("customer", CustomerSettings, bootstrap, trace_store_clients=False)


if __name__ == "__main__":
    main()
