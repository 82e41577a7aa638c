"""REST routes of the logging context: services write batches, officers and admins (SREs) read them back.

Same rules as gateway/customer_routes.py (shared parts in gateway/dependencies.py). Who may do what:
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

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from chassis.identity import Caller
from gateway import logging_models as m
from gateway.auth import ServiceCaller, StaffCaller
from gateway.dependencies import (
    ERROR_RESPONSES,
    RFC3339,
    LoggingService,
    Logs,
    PageSize,
    PageToken,
    json_response,
    proto_request,
    timestamp_parameter,
)
from gateway.errors import INVALID_REQUEST, ApiError, UpstreamError, upstream_violations, validation_details
from loanbook.logging.v1 import logging_pb2 as pb


class WholeBatchRoute(APIRoute):
    """A route whose bad batch is answered with every problem at once: when the HTTP shape check refuses some
    entries (a time without a zone, an unknown level), the entries it can still read are checked by the logging
    service too (WriteLogs with validate_only, storing nothing), so one malformed entry does not hide the rest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def every_problem_at_once(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                raise await _batch_refusal(request, error) from None

        return every_problem_at_once


router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, tags=["logs"])
write_router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES, tags=["logs"], route_class=WholeBatchRoute)
_ENTRY_FIELD = re.compile(r"^entries\[(\d+)\](.*)$")

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
class LogWriter:
    caller: Caller
    logs: LoggingService


async def log_writer(request: Request, caller: ServiceCaller, logs: Logs) -> LogWriter:
    # Kept on the request too: FastAPI resolves dependencies before it refuses a body, so a refused batch can
    # still be checked by the service on the caller's behalf (WholeBatchRoute).
    writer = LogWriter(caller, logs)
    request.state.log_writer = writer
    return writer


WriterOfLogs = Annotated[LogWriter, Depends(log_writer)]
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


@write_router.post(
    "/logs",
    response_model=m.WriteLogsResponse,
    summary="Store a batch of log entries (the service role)",
    description="WriteLogs: 1 to 1000 entries, stored all or none. A bad entry refuses the whole batch with 400, "
    "one detail per problem naming the entry and field (`entries[3].message`). Entries re-sent with the same "
    "`id` are stored once, so a shipper may retry a batch.",
)
async def write_logs(body: m.WriteLogsBody, caller: WriterOfLogs) -> JSONResponse:
    request = proto_request(pb.WriteLogsRequest(), body)
    response = await caller.logs.call(caller.logs.stub.WriteLogs, request, caller.caller)
    return json_response(response)


async def _batch_refusal(request: Request, error: RequestValidationError) -> Exception:
    """The shape check's problems plus the logging service's on the entries that passed it (less the fields the
    shape check already named), by entry index; nothing is stored. Without any of the service's, the shape
    check's refusal as every route gives it."""
    writer: LogWriter | None = getattr(request.state, "log_writer", None)
    try:
        raw = await request.json()
    except ValueError:  # malformed JSON: nothing to check further
        return error
    entries = raw.get("entries") if isinstance(raw, dict) else None
    if writer is None or not isinstance(entries, list):
        return error
    service = await _service_problems(writer, entries, error)
    if not service:
        return error
    shape = validation_details(error)
    named = {detail["field"] for detail in shape}
    details = sorted([*shape, *(d for d in service if d["field"] not in named)], key=_entry_order)
    fields = ", ".join(detail["field"] for detail in details)
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"{INVALID_REQUEST}{fields}", details)


async def _service_problems(
    writer: LogWriter, entries: list[Any], error: RequestValidationError
) -> list[dict[str, str]]:
    refused: dict[int, set[str]] = {}  # entry index -> its fields the shape check refused
    for issue in error.errors():
        location = list(issue.get("loc", ()))
        if location[:2] == ["body", "entries"] and len(location) > 3 and isinstance(location[2], int):
            refused.setdefault(location[2], set()).add(str(location[3]))
    checkable: list[tuple[int, m.LogEntryBody]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        readable = {key: value for key, value in entry.items() if key not in refused.get(index, set())}
        try:
            checkable.append((index, m.LogEntryBody.model_validate(readable)))
        except ValidationError:
            continue
    if not checkable:
        return []
    request = proto_request(pb.WriteLogsRequest(), m.WriteLogsBody(entries=[entry for _, entry in checkable]))
    request.validate_only = True
    try:
        await writer.logs.call(writer.logs.stub.WriteLogs, request, writer.caller)
    except UpstreamError as upstream:
        if upstream.error.code() is not grpc.StatusCode.INVALID_ARGUMENT:
            return []  # the shape check's problems stand on their own
        problems = []
        for violation in upstream_violations(upstream):
            match = _ENTRY_FIELD.match(violation["field"])
            if match is None:
                problems.append(violation)  # about the batch as a whole
            elif int(match.group(1)) < len(checkable):
                original = checkable[int(match.group(1))][0]  # the index in the batch as the client sent it
                problems.append({**violation, "field": f"entries[{original}]{match.group(2)}"})
        return problems
    return []


def _entry_order(detail: dict[str, str]) -> int:
    match = _ENTRY_FIELD.match(detail["field"])
    return int(match.group(1)) if match else -1


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
