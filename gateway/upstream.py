"""A downstream gRPC service as the gateway calls it: the gateway's deadline, the caller's identity, errors mapped."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import grpc
from google.protobuf.message import Message

from chassis.identity import Caller, caller_metadata
from chassis.rpc_telemetry import traced_call
from gateway.errors import UpstreamError

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


@dataclass(frozen=True)
class UpstreamService:
    """One service's stub and the gateway's deadline; a subclass per service names it (`name` labels its errors) and
    declares its stub's type."""

    name: ClassVar[str]
    stub: Any
    deadline_seconds: float

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        caller: Caller,
        rest_fields: Mapping[str, str] | None = None,
    ) -> ResponseT:
        """`rest_fields` names the REST parameter of a request field whose REST name is not its JSON name (a query
        parameter `from` for `from_time`), so the service's field violations name what the client sent."""
        try:
            return await traced_call(method, request, timeout=self.deadline_seconds, metadata=caller_metadata(caller))
        except grpc.aio.AioRpcError as error:
            raise UpstreamError(error, self.name, rest_fields) from None
