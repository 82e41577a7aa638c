"""An in-process customer service on a real port over real PostgreSQL, and a factory for test data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import grpc
import pytest

from chassis.grpc_server import GrpcServer
from loanbook.customer.v1 import customer_pb2_grpc
from services.customer.bootstrap import bootstrap
from services.customer.config import CustomerSettings
from tests.support.customers import Factory


@pytest.fixture(scope="session")
async def customer_address(postgres_dsn: str) -> AsyncIterator[str]:
    """The address of a customer service built by its real composition root."""
    settings = CustomerSettings(postgres_dsn=postgres_dsn, grpc_port=0, page_token_secret="t" * 32)
    async with AsyncExitStack() as stack:
        server = GrpcServer(settings, await bootstrap(settings, stack))
        await server.start()
        stack.push_async_callback(server.stop, 0)
        yield server.address


@pytest.fixture(scope="session")
async def customer_stub(customer_address: str) -> AsyncIterator[customer_pb2_grpc.CustomerServiceAsyncStub]:
    async with grpc.aio.insecure_channel(customer_address) as channel:
        yield customer_pb2_grpc.CustomerServiceStub(channel)


@pytest.fixture(scope="session")
async def db(postgres_dsn: str, customer_stub: object) -> AsyncIterator[asyncpg.Pool]:
    """Direct access to the tables, to assert what the service did (or did not) write."""
    async with asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2) as pool:
        yield pool


@pytest.fixture
def factory(customer_stub: customer_pb2_grpc.CustomerServiceAsyncStub) -> Factory:
    return Factory(customer_stub)
