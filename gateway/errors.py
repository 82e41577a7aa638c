"""The one mapping from gRPC status codes to HTTP, and the error body every failure uses."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# HTTP statuses that arise in the gateway itself (routing, framing), with the code their body carries: the gRPC
# code where one says what happened, else a name of the gateway's own (gRPC has no words for an HTTP method or a
# body size, and RESOURCE_EXHAUSTED already means 429). README "The gateway" lists the whole mapping.
ERROR_CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: grpc.StatusCode.INVALID_ARGUMENT.name,
    401: grpc.StatusCode.UNAUTHENTICATED.name,
    403: grpc.StatusCode.PERMISSION_DENIED.name,
    404: grpc.StatusCode.NOT_FOUND.name,
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: grpc.StatusCode.RESOURCE_EXHAUSTED.name,
}

# How chassis.errors.InvalidArgument begins its message, and the gateway its own: then a list of the bad fields.
INVALID_REQUEST = "invalid request: "
INTERNAL_MESSAGE = "internal error; the gateway log has the details under this request's trace id (X-Trace-Id)"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
TRACE_ID_HEADER = "X-Trace-Id"


def http_status_for(code: grpc.StatusCode) -> int:
    """HTTP status for a gRPC code; anything unmapped (INTERNAL, UNKNOWN, DATA_LOSS) is a bug: 500."""
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 500)


def current_trace_id() -> str | None:
    """The 32-hex trace id of the active span, if there is one."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def error_response(
    code: grpc.StatusCode,
    message: str,
    details: Sequence[Mapping[str, Any]] | None = None,
    *,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return _error_body(code.name, message, details, status_code or http_status_for(code), headers)


def http_error_response(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The error body for a refusal of the gateway's own (routing, framing), coded by ERROR_CODE_BY_HTTP_STATUS."""
    code = ERROR_CODE_BY_HTTP_STATUS.get(status_code, grpc.StatusCode.UNKNOWN.name)
    return _error_body(code, message, None, status_code, headers)


def _error_body(
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] | None,
    status_code: int,
    headers: Mapping[str, str] | None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": [dict(d) for d in details or ()]}}
    return JSONResponse(status_code=status_code, content=body, headers=dict(headers) if headers else None)


class ApiError(Exception):
    """A refusal decided in the gateway (authentication, authorization, framing); rendered as the error body."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        *,
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.status_code = status_code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.code, self.message, self.details, status_code=self.status_code, headers=self.headers)


class UpstreamError(Exception):
    """A gRPC call to a downstream service failed; rendered by grpc_error_response."""

    def __init__(self, error: grpc.aio.AioRpcError, service: str, rest_fields: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{service}: {error.code().name}")
        self.error = error
        self.service = service
        self.rest_fields = rest_fields or {}


def to_json_name(proto_name: str) -> str:
    """protoc's json_name rule: drop each underscore and upper-case the character after it."""
    return re.sub(r"_(.)", lambda match: match.group(1).upper(), proto_name)


# A field name, or a subscript (`[2]`, `['some_key']`) whose content is data, not a name, and is kept as it is.
_PATH_PART = re.compile(r"\[[^\]]*\]|[^.\[]+")


def to_json_path(proto_path: str) -> str:
    """A dotted proto field path in the REST body's JSON names: `principal.currency_code` → `principal.currencyCode`.

    Subscripts are kept as they are: `items[2].unit_price` → `items[2].unitPrice`, and a map key such as
    `attributes['http_route']` keeps its underscore (it is the client's key, not a proto field).
    """
    return _PATH_PART.sub(
        lambda part: part.group(0) if part.group(0).startswith("[") else to_json_name(part.group(0)), proto_path
    )


def field_violations(
    status_details_bin: bytes | None, rest_fields: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The google.rpc.BadRequest field violations in a `grpc-status-details-bin` value, with JSON field paths
    (or the REST parameter `rest_fields` names for a proto field path)."""
    renamed = rest_fields or {}
    if not status_details_bin:
        return []
    try:
        status = status_pb2.Status.FromString(status_details_bin)
    except Exception:  # a peer sent garbage: the code and message still stand
        logger.warning("unparseable grpc-status-details-bin from a downstream service")
        return []
    violations: list[dict[str, str]] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):  # False for other detail types, which are not passed on
            violations.extend(
                {"field": renamed.get(v.field) or to_json_path(v.field), "description": v.description}
                for v in bad_request.field_violations
            )
    return violations


def _status_details_bin(error: grpc.aio.AioRpcError) -> bytes | None:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return value
    return None


def upstream_violations(error: UpstreamError) -> list[dict[str, str]]:
    """The field violations of a failed call, in the REST names `grpc_error_response` would give them."""
    return field_violations(_status_details_bin(error.error), error.rest_fields)


def grpc_error_response(
    error: grpc.aio.AioRpcError, service: str, rest_fields: Mapping[str, str] | None = None
) -> JSONResponse:
    """The REST error for a failed call to `service`; upstream text is only passed on where it is meant for callers."""
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE or code is grpc.StatusCode.DEADLINE_EXCEEDED or http_status_for(code) == 500:
        # Channel errors name internal addresses, and INTERNAL/UNKNOWN text is a bug report: log it, say little.
        logger.warning(
            "%s service call failed", service, extra={"grpc_code": code.name, "grpc_message": error.details()}
        )
        message = {
            grpc.StatusCode.UNAVAILABLE: f"the {service} service is unavailable; retry later",
            grpc.StatusCode.DEADLINE_EXCEEDED: f"the {service} service did not answer in time",
        }.get(code, INTERNAL_MESSAGE)
        return error_response(code, message)
    violations = field_violations(_status_details_bin(error), rest_fields)
    message = error.details() or code.name
    if violations and message.startswith(INVALID_REQUEST):
        # The service's summary names proto fields; say it in the names the details (and the client) use.
        message = INVALID_REQUEST + ", ".join(violation["field"] for violation in violations)
    return error_response(code, message, violations)


def _location_path(location: Sequence[object]) -> str:
    """pydantic's location as the services write field paths: list positions subscripted (`entries[3].level`)."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def validation_details(error: RequestValidationError) -> list[dict[str, str]]:
    details = []
    for issue in error.errors():
        location = list(issue.get("loc", ()))
        if location and location[0] in ("body", "query", "path", "header"):
            where, location = str(location[0]), location[1:]
        else:
            where = "body"
        if issue.get("type") == "json_invalid":
            # The position is an index into the text, not a field; the decoder's reason names the problem.
            reason = (issue.get("ctx") or {}).get("error", "")
            details.append({"field": "(body)", "description": f"malformed JSON: {reason}".rstrip(": ")})
            continue
        field = _location_path(location) or f"({where})"
        # pydantic's "input" is the caller's data (possibly PII) and is never echoed back.
        details.append({"field": field, "description": str(issue.get("msg", "invalid"))})
    return details


def install_error_handlers(app: FastAPI) -> None:
    """Every refusal, whatever raises it, leaves as the same error body."""

    async def on_api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error.response()

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        details = validation_details(error)
        if any(detail["description"].startswith("malformed JSON") for detail in details):
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, "malformed JSON in the request body", details)
        fields = ", ".join(detail["field"] for detail in details)
        return error_response(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {fields}", details)

    async def on_parse_error(_: Request, error: Exception) -> JSONResponse:
        # protobuf's message quotes the offending value, which may be PII; keep only the field it names.
        match = re.search(r"Failed to parse (\w+) field", str(error))
        field = match.group(1) if match else "(body)"
        return error_response(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid request: {field}",
            [{"field": field, "description": "not a valid value for this field"}],
        )

    async def on_http_exception(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        messages = {404: "no such route", 405: "method not allowed on this route"}
        message = messages.get(error.status_code, str(error.detail))
        return http_error_response(error.status_code, message, error.headers)

    async def on_upstream_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, UpstreamError)
        return grpc_error_response(error.error, error.service, error.rest_fields)

    async def on_bug(_: Request, error: Exception) -> JSONResponse:
        # Runs in Starlette's outermost error middleware, past the one that stamps X-Trace-Id: stamp it here.
        logger.error("unhandled error in request", exc_info=error)
        trace_id = current_trace_id()
        return error_response(
            grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, headers={TRACE_ID_HEADER: trace_id} if trace_id else None
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(json_format.ParseError, on_parse_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(UpstreamError, on_upstream_error)
    app.add_exception_handler(Exception, on_bug)
