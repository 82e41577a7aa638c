"""Composition root of the customer service: the only place its adapters are chosen."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AsyncExitStack

from chassis.grpc_server import ServiceBinding
from chassis.page_tokens import PageTokens
from chassis.stores import postgres_pool, postgres_readiness
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc
from services.customer.adapters.postgres import PostgresCustomerRepository
from services.customer.api import CustomerServicer
from services.customer.config import CustomerSettings
from services.customer.demo import seed_demo_data
from services.customer.schema import upgrade_to_head
from services.customer.use_cases import CustomerUseCases

logger = logging.getLogger(__name__)

SERVICE_NAME = customer_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name


async def bootstrap(settings: CustomerSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    pool = await stack.enter_async_context(postgres_pool(settings))
    if settings.migrate_on_start:
        await upgrade_to_head(settings.postgres_dsn.get_secret_value())
    repository = PostgresCustomerRepository(pool)
    if settings.seed_demo_data:
        logger.info("demo data seeded", extra={"records_created": await seed_demo_data(repository)})
    use_cases = CustomerUseCases(repository, PageTokens(settings.page_token_secret_or_random(), "customer"))
    servicer = CustomerServicer(use_cases)
    return [
        ServiceBinding(
            SERVICE_NAME,
            lambda server: customer_pb2_grpc.add_CustomerServiceServicer_to_server(servicer, server),
            readiness=[postgres_readiness(pool)],
        )
    ]
