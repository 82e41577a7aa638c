"""gRPC status codes map to the HTTP statuses the brief names, and unmapped ones are treated as bugs."""

import json

import grpc
import pytest

from gateway.errors import error_response, http_status_for


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_grpc_code_maps_to_http_status(code: grpc.StatusCode, http_status: int) -> None:
    assert http_status_for(code) == http_status


def test_error_body_has_code_message_and_details() -> None:
    response = error_response(grpc.StatusCode.NOT_FOUND, "customer c-1 not found", [{"field": "id"}])

    assert response.status_code == 404
    assert json.loads(bytes(response.body)) == {
        "error": {"code": "NOT_FOUND", "message": "customer c-1 not found", "details": [{"field": "id"}]}
    }
