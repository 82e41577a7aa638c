"""Several connections to one service, calls taking turns over them: what spreads a client's calls over workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chassis.grpc_client import Rotating, create_channels


class PeerRecordingHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # grpcio-health ships no hints
    """Answers SERVING and remembers the client address (host:port, one per TCP connection) of every call."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def Check(  # the generated servicer's method name
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        self.peers.append(context.peer())
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, PeerRecordingHealth]]:
    servicer = PeerRecordingHealth()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(grace=None)


async def check_through(channels: list[grpc.aio.Channel], calls: int) -> None:
    stub = Rotating([health_pb2_grpc.HealthStub(channel) for channel in channels])
    try:
        for _ in range(calls):
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        for channel in channels:
            await channel.close()


async def test_each_channel_is_a_connection_of_its_own_and_calls_take_turns(
    server: tuple[str, PeerRecordingHealth],
) -> None:
    address, servicer = server

    await check_through(create_channels(address, None, 3), calls=9)

    assert len(set(servicer.peers)) == 3
    # Round robin: every connection carries every third call.
    assert servicer.peers[:3] * 3 == servicer.peers


async def test_without_their_own_connections_channels_to_one_address_share_one(
    server: tuple[str, PeerRecordingHealth],
) -> None:
    # What create_channels works around: gRPC's C core shares the connection among equal channels.
    address, servicer = server
    shared = [grpc.aio.insecure_channel(address) for _ in range(3)]

    await check_through(shared, calls=6)

    assert len(set(servicer.peers)) == 1


async def test_one_connection_is_the_shared_channel(server: tuple[str, PeerRecordingHealth]) -> None:
    address, servicer = server

    await check_through(create_channels(address, None, 1), calls=3)

    assert len(set(servicer.peers)) == 1
