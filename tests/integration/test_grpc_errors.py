"""Domain errors raised in a handler reach the client as the brief's status codes, with field details."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from chassis.config import GrpcServiceSettings
from chassis.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
    VersionConflict,
)
from chassis.grpc_server import GrpcServer, ServiceBinding

SERVICE = "loanbook.test.v1.FailingService"

ERRORS: dict[str, Exception] = {
    "invalid": InvalidArgument(
        [FieldViolation("email", "must be an e-mail address"), FieldViolation("principal.units", "must be positive")]
    ),
    "missing": NotFound("customer", "c-1"),
    "duplicate": AlreadyExists("branch", "code"),
    "illegal": FailedPrecondition("application is FUNDED; cannot approve"),
    "stale": VersionConflict("customer", "c-1", expected=1, actual=2),
    "down": Unavailable("customer service unavailable"),
    "unimplemented": NotImplementedError("Method not implemented!"),
    "bug": RuntimeError("secret national id 123-45-6789 leaked into an exception"),
}


def _failing_service(registration: str) -> ServiceBinding:
    async def fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise ERRORS[request.decode()]

    methods: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {"Fail": grpc.unary_unary_rpc_method_handler(fail)}

    def add_to_server(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        if registration == "registered":  # as generated add_*Servicer_to_server functions do: both ways
            server.add_registered_method_handlers(SERVICE, methods)

    return ServiceBinding(SERVICE, add_to_server)


@pytest.fixture(params=["generic", "registered"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[grpc.aio.Channel]:
    server = GrpcServer(GrpcServiceSettings(grpc_port=0), [_failing_service(request.param)])
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield channel
    finally:
        await server.stop(grace=0)


async def _call(channel: grpc.aio.Channel, which: str) -> grpc.aio.AioRpcError:
    fail: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/Fail")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await fail(which.encode(), timeout=5)
    return raised.value


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("duplicate", grpc.StatusCode.ALREADY_EXISTS),
        ("illegal", grpc.StatusCode.FAILED_PRECONDITION),
        ("stale", grpc.StatusCode.ABORTED),
        ("down", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_domain_error_becomes_its_status_code_with_its_message(
    channel: grpc.aio.Channel, which: str, code: grpc.StatusCode
) -> None:
    error = await _call(channel, which)

    assert error.code() == code
    assert error.details() == str(ERRORS[which])
    assert isinstance(ERRORS[which], DomainError)


async def test_invalid_argument_carries_bad_request_field_violations(channel: grpc.aio.Channel) -> None:
    error = await _call(channel, "invalid")

    metadata = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("email", "must be an e-mail address"),
        ("principal.units", "must be positive"),
    ]


async def test_an_unexpected_exception_is_internal_with_a_generic_message(channel: grpc.aio.Channel) -> None:
    error = await _call(channel, "bug")

    assert error.code() == grpc.StatusCode.INTERNAL
    assert "123-45-6789" not in (error.details() or "")
    assert "trace id" in (error.details() or "")


async def test_a_method_the_servicer_does_not_implement_is_unimplemented_not_internal(
    channel: grpc.aio.Channel,
) -> None:
    error = await _call(channel, "unimplemented")

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "this method is not implemented"
