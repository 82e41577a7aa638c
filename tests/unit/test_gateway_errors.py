"""gRPC status codes map to the HTTP statuses the brief names, and unmapped ones are treated as bugs."""

import json

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc.aio import AioRpcError

from gateway.errors import (
    error_response,
    field_violations,
    grpc_error_response,
    http_error_response,
    http_status_for,
    to_json_path,
)


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


@pytest.mark.parametrize(
    ("proto_path", "json_path"),
    [
        ("date_of_birth", "dateOfBirth"),
        ("principal.currency_code", "principal.currencyCode"),
        ("annual_rate_bps", "annualRateBps"),
        ("entries[2].trace_id", "entries[2].traceId"),
        # A map key is the client's data: neither its underscores nor its dots are field-name syntax.
        ("entries[0].attributes['http_route']", "entries[0].attributes['http_route']"),
        ("entries[1].attributes['a.b_c']", "entries[1].attributes['a.b_c']"),
        ("name", "name"),
        ("", ""),
    ],
)
def test_field_paths_become_the_json_names_of_the_rest_body(proto_path: str, json_path: str) -> None:
    assert to_json_path(proto_path) == json_path


def _status_bin(*details: Message) -> bytes:
    status = status_pb2.Status(code=3, message="invalid request")
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status.SerializeToString()


def test_bad_request_field_violations_are_passed_through_with_json_field_names() -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="date_of_birth", description="must be in the past"),
            error_details_pb2.BadRequest.FieldViolation(field="principal.currency_code", description="not ISO 4217"),
        ]
    )

    assert field_violations(_status_bin(error_details_pb2.ErrorInfo(reason="X"), bad_request)) == [
        {"field": "dateOfBirth", "description": "must be in the past"},
        {"field": "principal.currencyCode", "description": "not ISO 4217"},
    ]


def test_a_violation_of_a_field_rest_takes_from_a_query_parameter_names_that_parameter() -> None:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="from_time", description="must be before to_time"),
            error_details_pb2.BadRequest.FieldViolation(field="page_token", description="page token is not valid"),
        ]
    )

    assert field_violations(_status_bin(bad_request), {"from_time": "from"}) == [
        {"field": "from", "description": "must be before to_time"},
        {"field": "pageToken", "description": "page token is not valid"},
    ]


@pytest.mark.parametrize("raw", [None, b"", b"\xff\xfenot a status"])
def test_missing_or_unparseable_status_details_give_no_violations(raw: bytes | None) -> None:
    assert field_violations(raw) == []


def _rpc_error(code: grpc.StatusCode, message: str, trailing: tuple[tuple[str, str | bytes], ...] = ()) -> AioRpcError:
    return AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=message)


def test_an_invalid_argument_from_a_service_names_its_fields_in_json_names_in_message_and_details() -> None:
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field="national_id", description="required"),
        error_details_pb2.BadRequest.FieldViolation(field="amount.currency_code", description="must be one of"),
    ]
    trailing = (("grpc-status-details-bin", _status_bin(error_details_pb2.BadRequest(field_violations=violations))),)
    message = "invalid request: national_id, amount.currency_code"

    response = grpc_error_response(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, message, trailing), "c")

    assert response.status_code == 400
    assert json.loads(bytes(response.body))["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "invalid request: nationalId, amount.currencyCode",
        "details": [
            {"field": "nationalId", "description": "required"},
            {"field": "amount.currencyCode", "description": "must be one of"},
        ],
    }


def test_a_field_from_the_path_is_named_as_the_route_declares_it_in_message_and_details() -> None:
    violation = error_details_pb2.BadRequest.FieldViolation(field="customer_id", description="must be a UUID")
    trailing = (("grpc-status-details-bin", _status_bin(error_details_pb2.BadRequest(field_violations=[violation]))),)
    error = _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "invalid request: customer_id", trailing)

    response = grpc_error_response(error, "customer", {"customer_id": "id"})

    assert json.loads(bytes(response.body))["error"] == {
        "code": "INVALID_ARGUMENT",
        "message": "invalid request: id",
        "details": [{"field": "id", "description": "must be a UUID"}],
    }


def test_a_refusal_of_the_gateways_own_carries_a_code_that_says_what_happened() -> None:
    too_large = http_error_response(413, "the request body is larger than 10 bytes")
    wrong_method = http_error_response(405, "method not allowed on this route")

    assert (too_large.status_code, json.loads(bytes(too_large.body))["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert (wrong_method.status_code, json.loads(bytes(wrong_method.body))["error"]["code"]) == (
        405,
        "METHOD_NOT_ALLOWED",
    )


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])
def test_a_bug_in_a_service_is_a_500_with_a_generic_message(code: grpc.StatusCode) -> None:
    response = grpc_error_response(_rpc_error(code, "KeyError: 'national_id' for Jane Doe 1980-01-01"), "customer")

    body = json.loads(bytes(response.body))
    assert response.status_code == 500
    assert body["error"]["code"] == code.name
    assert "Jane" not in body["error"]["message"]
    assert "KeyError" not in body["error"]["message"]


def test_an_unreachable_service_is_a_503_that_does_not_name_internal_addresses() -> None:
    error = _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: 10.0.0.7:50151")

    response = grpc_error_response(error, "customer")

    assert response.status_code == 503
    assert json.loads(bytes(response.body))["error"]["message"] == "the customer service is unavailable; retry later"
