"""The customer service's gRPC health tells the truth about PostgreSQL: NOT_SERVING while it cannot be reached,
SERVING again once it can, with the service built by its real composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest

from chassis.grpc_server import LIVENESS, NOT_SERVING, SERVING, GrpcServer
from loanbook.customer.v1 import customer_pb2, customer_pb2_grpc
from services.customer.bootstrap import SERVICE_NAME, bootstrap
from services.customer.config import CustomerSettings
from tests.support.grpc import health_becomes
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy.for_dsn(postgres_dsn)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def address_behind_proxy(postgres_dsn: str, proxy: TcpProxy) -> AsyncIterator[str]:
    settings = CustomerSettings(
        postgres_dsn=proxy.dsn_through(postgres_dsn),
        grpc_port=0,
        page_token_secret="t" * 32,
        health_check_interval_seconds=0.1,
    )
    async with AsyncExitStack() as stack:
        server = GrpcServer(settings, await bootstrap(settings, stack))
        await server.start()
        stack.push_async_callback(server.stop, 0)
        yield server.address


async def _list_branches(address: str) -> customer_pb2.ListBranchesResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = customer_pb2_grpc.CustomerServiceStub(channel)
        response: customer_pb2.ListBranchesResponse = await stub.ListBranches(
            customer_pb2.ListBranchesRequest(page_size=1), timeout=5
        )
        return response


async def test_not_serving_while_postgresql_is_unreachable_and_serving_once_it_is_back(
    address_behind_proxy: str, proxy: TcpProxy
) -> None:
    address = address_behind_proxy
    await health_becomes(address, "", SERVING)

    await proxy.cut()

    await health_becomes(address, "", NOT_SERVING)
    await health_becomes(address, SERVICE_NAME, NOT_SERVING)
    await health_becomes(address, LIVENESS, SERVING)
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # what the health said: requests cannot succeed
        await _list_branches(address)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    await proxy.restore()

    await health_becomes(address, "", SERVING)
    await health_becomes(address, SERVICE_NAME, SERVING)
    await _list_branches(address)
