"""Composition root of the logging service: the only place its adapters are chosen."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack

from chassis.grpc_server import ServiceBinding
from chassis.stores import dynamodb_client, postgres_pool
from loanbook.logging.v1 import logging_pb2, logging_pb2_grpc
from services.logging.config import LoggingSettings

SERVICE_NAME = logging_pb2.DESCRIPTOR.services_by_name["LoggingService"].full_name


async def bootstrap(settings: LoggingSettings, stack: AsyncExitStack) -> Sequence[ServiceBinding]:
    await stack.enter_async_context(postgres_pool(settings))
    await stack.enter_async_context(dynamodb_client(settings))
    # RPCs answer UNIMPLEMENTED until the logging issue gives the servicer its hybrid store.
    servicer = logging_pb2_grpc.LoggingServiceServicer()  # type: ignore[abstract]
    return [
        ServiceBinding(
            SERVICE_NAME, lambda server: logging_pb2_grpc.add_LoggingServiceServicer_to_server(servicer, server)
        )
    ]
