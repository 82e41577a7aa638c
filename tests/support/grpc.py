"""What a gRPC error and gRPC health say, as tests read them."""

from __future__ import annotations

import asyncio

import grpc


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field names of the google.rpc.BadRequest detail of an INVALID_ARGUMENT error."""
    from google.rpc import error_details_pb2, status_pb2

    metadata = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [violation.field for violation in bad_request.field_violations]


async def health_becomes(address: str, service: str, status: int, timeout: float = 15) -> None:
    """Returns once gRPC health at `address` reports `status` for `service`, watching (not polling) for it."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
        try:
            async with asyncio.timeout(timeout):
                async for response in watch:
                    if response.status == status:
                        return
        except TimeoutError:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            raise AssertionError(f"health of {service!r} did not become {name} within {timeout} s") from None
        finally:
            watch.cancel()
        raise AssertionError("the health watch ended")
