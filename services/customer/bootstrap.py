"""Composition root of the customer service: the only place its adapters are chosen."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

from chassis.grpc_server import ServiceBinding
from chassis.stores import postgres_pool
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc
from services.customer.config import CustomerSettings

SERVICE_NAME = customer_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name


async def bootstrap(settings: CustomerSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    await stack.enter_async_context(postgres_pool(settings))
    # RPCs answer UNIMPLEMENTED until the customer issue gives the servicer its use cases.
    servicer = customer_pb2_grpc.CustomerServiceServicer()  # type: ignore[abstract]
    return [
        ServiceBinding(
            SERVICE_NAME, lambda server: customer_pb2_grpc.add_CustomerServiceServicer_to_server(servicer, server)
        )
    ]
