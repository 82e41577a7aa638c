"""Composition root of the payment service: the only place its adapters are chosen."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

from chassis.grpc_client import create_channel
from chassis.grpc_server import ServiceBinding
from chassis.stores import dynamodb_client, postgres_pool
from loanbook.payment.v1 import payment_pb2, payment_pb2_grpc
from services.payment.config import PaymentSettings

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name


async def bootstrap(settings: PaymentSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    await stack.enter_async_context(postgres_pool(settings))
    await stack.enter_async_context(dynamodb_client(settings))
    customer_channel = create_channel(settings.customer_addr, settings)
    stack.push_async_callback(customer_channel.close)
    # RPCs answer UNIMPLEMENTED until the payment issue gives the servicer its hybrid store.
    servicer = payment_pb2_grpc.PaymentServiceServicer()  # type: ignore[abstract]
    return [
        ServiceBinding(
            SERVICE_NAME, lambda server: payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, server)
        )
    ]
