"""The LoggingService gRPC servicer: maps proto messages to use-case calls and entries back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from chassis.errors import FieldViolation, InvalidArgument
from chassis.timestamps import optional_datetime, set_timestamp
from loanbook.logging.v1 import logging_pb2 as pb
from loanbook.logging.v1 import logging_pb2_grpc
from services.logging.domain import EntryCandidate, LogEntry
from services.logging.use_cases import LogUseCases

# Handlers raise domain errors; the chassis interceptor maps them to status codes.
Context = grpc.aio.ServicerContext[Any, Any]


def candidate(message: pb.LogEntry) -> EntryCandidate:
    try:
        time, time_problem = optional_datetime(message, "time"), ""
    except InvalidArgument as error:  # one entry's problem: reported with every other one of the batch
        time, time_problem = None, error.violations[0].description
    return EntryCandidate(
        id=message.id,
        time=time,
        time_problem=time_problem,
        service=message.service,
        level=message.level,
        message=message.message,
        attributes=dict(message.attributes),
        trace_id=message.trace_id,
        span_id=message.span_id,
    )


def fill_entry(message: pb.LogEntry, entry: LogEntry) -> pb.LogEntry:
    """Write an entry into a (new or repeated-field) message in place."""
    message.id = str(entry.id)
    set_timestamp(message.time, entry.time)
    message.service = entry.service
    message.level = int(entry.level)  # type: ignore[assignment]  # the domain's numbers are the enum's
    message.message = entry.message
    message.attributes.update(entry.attributes)
    message.trace_id = entry.trace_id
    message.span_id = entry.span_id
    return message


class LoggingServicer(logging_pb2_grpc.LoggingServiceServicer):
    def __init__(self, use_cases: LogUseCases) -> None:
        self._use_cases = use_cases

    async def WriteLogs(self, request: pb.WriteLogsRequest, context: Context) -> pb.WriteLogsResponse:
        candidates = [candidate(entry) for entry in request.entries]
        accepted = await self._use_cases.write_logs(candidates, validate_only=request.validate_only)
        return pb.WriteLogsResponse(accepted_count=accepted)

    async def StreamLogs(
        self, request_iterator: AsyncIterator[pb.StreamLogsRequest], context: Context
    ) -> pb.StreamLogsResponse:
        """Each message is a batch, stored as it arrives. A bad message ends the stream with INVALID_ARGUMENT
        naming it (`messages[i].entries[j].field`); the messages before it are stored, so a shipper resends
        from the bad one on (entries carry ids, so resending a stored one is harmless)."""
        accepted = 0
        index = 0
        async for message in request_iterator:
            try:
                accepted += await self._use_cases.write_logs([candidate(entry) for entry in message.entries])
            except InvalidArgument as error:
                raise InvalidArgument(
                    [FieldViolation(f"messages[{index}].{v.field}", v.description) for v in error.violations],
                    f"message {index} of the stream is invalid; {accepted} entries before it were stored",
                ) from None  # the same violations, renamed: the original adds nothing to a trace
            index += 1
        return pb.StreamLogsResponse(accepted_count=accepted)

    async def QueryLogs(self, request: pb.QueryLogsRequest, context: Context) -> pb.QueryLogsResponse:
        page = await self._use_cases.query_logs(
            request.service,
            optional_datetime(request, "from_time"),
            optional_datetime(request, "to_time"),
            request.min_level,
            request.page_size,
            request.page_token,
        )
        response = pb.QueryLogsResponse(next_page_token=page.next_page_token)
        for entry in page.items:
            fill_entry(response.entries.add(), entry)
        return response

    async def GetTraceLogs(self, request: pb.GetTraceLogsRequest, context: Context) -> pb.GetTraceLogsResponse:
        response = pb.GetTraceLogsResponse()
        for entry in await self._use_cases.trace_logs(request.trace_id):
            fill_entry(response.entries.add(), entry)
        return response
