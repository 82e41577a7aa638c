"""REST routes of the logging context: services write batches, officers and admins (SREs) read them back.

Same rules as gateway/customer_routes.py. Who may do what:
- `POST /v1/logs` is for the `service` role only. A log line claims to come from a service; letting a person's
  token (even an admin's) write them would let a human forge another service's lines, and ingestion is a
  machine's job. Anyone who needs to write a test line mints a service token.
- `GET /v1/logs` is for officers and admins. The `service` role may not read: a shipper's credential sits on
  every host, and a leaked one should expose nothing. Customers may not read either: logs are about everyone.

`GET /v1/logs` is QueryLogs (one service's entries in a time range, newest first, paged) or, with `traceId`,
GetTraceLogs (every entry of one trace across services, oldest first, in one response). With `traceId`,
`service` and `minLevel` narrow the trace's entries ("the errors of this request"); `from`, `to`, `pageSize`
and `pageToken` are refused with 400 naming them, since a trace is answered whole and is not a time window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import grpc
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from chassis.identity import Caller
from gateway import logging_models as m
from gateway.auth import ServiceCaller, StaffCaller
from gateway.customer_routes import ERROR_RESPONSES, PageSize, PageToken, json_response, proto_request
from gateway.errors import ApiError
from gateway.payment_routes import RFC3339, timestamp_parameter
from gateway.upstream import UpstreamService
from loanbook.logging.v1 import logging_pb2 as pb
from loanbook.logging.v1 import logging_pb2_grpc

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, tags=["logs"])

# The REST name of each QueryLogsRequest field the service may name in a violation.
QUERY_PARAMETERS = {
    "service": "service",
    "from_time": "from",
    "to_time": "to",
    "min_level": "minLevel",
    "page_size": "pageSize",
    "page_token": "pageToken",
    "trace_id": "traceId",
}


@dataclass(frozen=True)
class LoggingService(UpstreamService):
    """The logging service stub, called with the gateway's deadline and the caller's identity."""

    name: ClassVar[str] = "logging"
    stub: logging_pb2_grpc.LoggingServiceAsyncStub
    deadline_seconds: float


async def logging_service(request: Request) -> LoggingService:
    service: LoggingService = request.app.state.logging_service
    return service


Logs = Annotated[LoggingService, Depends(logging_service)]
ServiceName = Annotated[
    str, Query(max_length=64, description="the service whose entries to list; required without `traceId`")
]
MinLevel = Annotated[m.LogLevel, Query(alias="minLevel", description="only entries at this level or above")]
TraceId = Annotated[
    str,
    Query(
        alias="traceId",
        pattern="^([0-9a-f]{32})?$",
        description="every entry of this W3C trace id (32 lowercase hex digits), across services",
    ),
]
LoggedFrom = Annotated[
    str, Query(alias="from", max_length=64, description=f"at or after; {RFC3339}; default: an hour before `to`")
]
LoggedTo = Annotated[str, Query(alias="to", max_length=64, description=f"before; {RFC3339}; default: now")]
# Refused next to `traceId`, with the reason.
NOT_WITH_TRACE_ID = "cannot be combined with traceId: a trace is answered whole, in time order, unpaged"


def _invalid(parameter: str, description: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"invalid request: {parameter}",
        [{"field": parameter, "description": description}],
    )


@router.post(
    "/logs",
    response_model=m.WriteLogsResponse,
    summary="Store a batch of log entries (the service role)",
    description="WriteLogs: 1 to 1000 entries, stored all or none. A bad entry refuses the whole batch with 400, "
    "one detail per problem naming the entry and field (`entries[3].message`). Entries re-sent with the same "
    "`id` are stored once, so a shipper may retry a batch.",
)
async def write_logs(body: m.WriteLogsBody, caller: ServiceCaller, logs: Logs) -> JSONResponse:
    request = proto_request(pb.WriteLogsRequest(), body)
    response = await logs.call(logs.stub.WriteLogs, request, caller)
    return json_response(response)


@router.get(
    "/logs",
    response_model=m.LogsPage,
    summary="One service's entries in a time range, or every entry of one trace (officers and admins)",
    description="Without `traceId`: QueryLogs. `service` is required; `from` (inclusive) and `to` (exclusive) "
    "default to the hour before now; entries come newest first, `pageSize` at a time, at `minLevel` or above.\n\n"
    "With `traceId`: GetTraceLogs, every entry of that trace across services, oldest first, in one response "
    "(`nextPageToken` is always empty). `service` and `minLevel` then narrow the trace's entries; `from`, `to`, "
    "`pageSize` and `pageToken` are refused with 400 naming them.",
)
async def read_logs(
    caller: StaffCaller,
    logs: Logs,
    service: ServiceName = "",
    logged_from: LoggedFrom = "",
    logged_to: LoggedTo = "",
    min_level: MinLevel = m.LogLevel.UNSPECIFIED,
    trace_id: TraceId = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    if trace_id:
        given = {"from": logged_from, "to": logged_to, "pageSize": page_size, "pageToken": page_token}
        if refused := [parameter for parameter, value in given.items() if value]:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid request: {', '.join(refused)}",
                [{"field": parameter, "description": NOT_WITH_TRACE_ID} for parameter in refused],
            )
        return await _trace(caller, logs, trace_id, service, min_level)
    if not service:
        raise _invalid("service", "is required (or give traceId)")
    from_time, to_time = timestamp_parameter(logged_from, "from"), timestamp_parameter(logged_to, "to")
    if from_time is not None and to_time is not None and from_time.ToDatetime() >= to_time.ToDatetime():
        raise _invalid("from", "must be before to")
    request = pb.QueryLogsRequest(
        service=service,
        from_time=from_time,
        to_time=to_time,
        min_level=pb.LogLevel.Value(min_level.value),
        page_size=page_size,
        page_token=page_token,
    )
    response = await logs.call(logs.stub.QueryLogs, request, caller, QUERY_PARAMETERS)
    return json_response(response)


async def _trace(caller: Caller, logs: Logs, trace_id: str, service: str, min_level: m.LogLevel) -> JSONResponse:
    response = await logs.call(
        logs.stub.GetTraceLogs, pb.GetTraceLogsRequest(trace_id=trace_id), caller, QUERY_PARAMETERS
    )
    lowest = pb.LogLevel.Value(min_level.value)
    # GetTraceLogs has no filters; a trace is at most a few thousand entries, so narrowing them here is cheap.
    page = pb.QueryLogsResponse(
        entries=[
            entry for entry in response.entries if (not service or entry.service == service) and entry.level >= lowest
        ]
    )
    return json_response(page)
