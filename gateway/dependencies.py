"""What every route module shares: the upstream services, error responses, path and page parameters, proto in and
JSON out, and the ownership rule; route modules import from here and never from each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import grpc
import orjson
from fastapi import Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from chassis.errors import NotFound
from chassis.identity import Caller, Role
from gateway import customer_models as m
from gateway.errors import ApiError
from gateway.proto_json import message_to_json
from gateway.upstream import RequestT, UpstreamService
from loanbook.customer.v1 import customer_pb2_grpc
from loanbook.logging.v1 import logging_pb2_grpc
from loanbook.migration.v1 import migration_pb2_grpc
from loanbook.payment.v1 import payment_pb2_grpc

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": m.ErrorBody, "description": description}
    for status, description in {
        400: "Bad input (INVALID_ARGUMENT); `details` names each field",
        401: "Missing, malformed, expired or untrusted bearer token (UNAUTHENTICATED)",
        403: "The caller's role may not do this (PERMISSION_DENIED)",
        404: "No such resource, or not one the caller may see (NOT_FOUND)",
        409: "Conflict: already exists, illegal workflow step or stale version",
        413: "Request body too large (PAYLOAD_TOO_LARGE)",
        500: "A bug (INTERNAL); the message carries no detail, the log does",
        501: "The service does not implement this call yet (UNIMPLEMENTED)",
        503: "The service is unavailable; retry later (UNAVAILABLE)",
        504: "The service did not answer in time (DEADLINE_EXCEEDED)",
    }.items()
}

# The services, called with the gateway's deadline and the caller's identity; app.state holds one of each. Each
# narrows `stub` to its async stub type for the type checker (those types exist only in the generated .pyi stubs).


class CustomerService(UpstreamService):
    name = "customer"
    stub: customer_pb2_grpc.CustomerServiceAsyncStub


class PaymentService(UpstreamService):
    name = "payment"
    stub: payment_pb2_grpc.PaymentServiceAsyncStub


class LoggingService(UpstreamService):
    name = "logging"
    stub: logging_pb2_grpc.LoggingServiceAsyncStub


class MigrationService(UpstreamService):
    """The migration control plane, served by the payment service (on its channel)."""

    name = "migration"
    stub: migration_pb2_grpc.MigrationServiceAsyncStub


def _from_app_state(attribute: str) -> Callable[[Request], Awaitable[Any]]:
    # `async def` although it only reads app.state: FastAPI runs a plain `def` dependency in a worker thread, a
    # thread hop per request (bench/gateway_overhead.py).
    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, attribute)

    return dependency


Customers = Annotated[CustomerService, Depends(_from_app_state("customer_service"))]
Payments = Annotated[PaymentService, Depends(_from_app_state("payment_service"))]
Logs = Annotated[LoggingService, Depends(_from_app_state("logging_service"))]
Migrations = Annotated[MigrationService, Depends(_from_app_state("migration_service"))]
ResourceId = Annotated[str, Path(min_length=1, max_length=128, description="the resource's opaque id")]
PageSize = Annotated[
    int, Query(alias="pageSize", ge=0, le=m.INT32_MAX, description="at most this many; 0 = the service's default")
]
PageToken = Annotated[
    str, Query(alias="pageToken", max_length=4096, description="`nextPageToken` of the previous page")
]
BranchFilter = Annotated[str, Query(alias="branchId", max_length=128)]


def path_id(proto_field: str) -> dict[str, str]:
    """`rest_fields` for a call whose `proto_field` comes from the route's `{id}`: a violation names `id`."""
    return {proto_field: "id"}


def proto_request(message: RequestT, body: m.ProtoJson | None = None, **fields: Any) -> RequestT:
    """`message` filled from a validated body (canonical JSON) plus fields from the path and query."""
    json_format.ParseDict({**(body.to_proto_json() if body else {}), **fields}, message)
    return message


class ProtoJsonResponse(JSONResponse):
    """A JSON body written by orjson: the same compact UTF-8 bytes as JSONResponse's json.dumps for what
    message_to_json gives (strings, ints, bools, lists, dicts with string keys), in a fraction of the time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(message: Message, status_code: int = 200) -> JSONResponse:
    # Returned as a Response, so FastAPI does not re-validate it against the response model: the mirrors are
    # checked against the protos in the unit tests, and schemathesis checks real answers against the document.
    return ProtoJsonResponse(message_to_json(message), status_code=status_code)


def not_found(resource: str, resource_id: str) -> ApiError:
    # Same words as the service's NotFound, so "not yours" and "does not exist" cannot be told apart.
    return ApiError(grpc.StatusCode.NOT_FOUND, str(NotFound(resource, resource_id)))


def hide_unless_own(caller: Caller, owner_id: str, resource: str, resource_id: str) -> None:
    """404 for a customer asking for what `owner_id` (another customer) owns: "not yours" reads as "no such"."""
    if caller.role is Role.CUSTOMER and not caller.is_customer(owner_id):
        raise not_found(resource, resource_id)


def only_own_customer(caller: Caller, customer_id: str) -> str:
    """The customer id a list or submission is for: a customer's own, whatever it asked (a different one → 403)."""
    if caller.role is not Role.CUSTOMER:
        return customer_id
    assert caller.customer_id is not None
    if customer_id and customer_id != caller.customer_id:
        raise ApiError(grpc.StatusCode.PERMISSION_DENIED, "a customer may only act on its own customerId")
    return caller.customer_id


RFC3339 = "RFC 3339 with a time zone, e.g. 2026-01-31T00:00:00Z"


def timestamp_parameter(value: str, parameter: str) -> timestamp_pb2.Timestamp | None:
    """An RFC 3339 query parameter as a Timestamp (None when absent); malformed → 400 naming `parameter`."""
    if not value:
        return None
    timestamp = timestamp_pb2.Timestamp()
    try:
        timestamp.FromJsonString(value)
    except ValueError:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid request: {parameter}",
            [{"field": parameter, "description": f"must be {RFC3339}"}],
        ) from None
    return timestamp
