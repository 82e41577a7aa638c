"""The one mapping from gRPC status codes to HTTP, and the error body every failure uses."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi.responses import JSONResponse

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


def http_status_for(code: grpc.StatusCode) -> int:
    """HTTP status for a gRPC code; anything unmapped (INTERNAL, UNKNOWN, DATA_LOSS) is a bug: 500."""
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 500)


def error_response(code: grpc.StatusCode, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    body = {"error": {"code": code.name, "message": message, "details": details or []}}
    return JSONResponse(status_code=http_status_for(code), content=body)
