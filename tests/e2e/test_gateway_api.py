"""The gateway's REST surface against the real processes: auth matrix, error bodies, limits, trace ids, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from chassis.identity import Role
from gateway.tokens import mint_token
from tests.support.rest import assert_error, bearer
from tests.support.system import RunningSystem, run_module

BRIEF_CUSTOMER_ROUTES = {
    ("post", "/v1/branches"),
    ("get", "/v1/branches"),
    ("get", "/v1/branches/{id}"),
    ("get", "/v1/branches/{id}/portfolio"),
    ("post", "/v1/officers"),
    ("get", "/v1/officers"),
    ("get", "/v1/officers/{id}"),
    ("post", "/v1/customers"),
    ("get", "/v1/customers"),
    ("get", "/v1/customers/{id}"),
    ("patch", "/v1/customers/{id}"),
    ("post", "/v1/applications"),
    ("get", "/v1/applications"),
    ("get", "/v1/applications/{id}"),
    ("post", "/v1/applications/{id}/{action}"),
}


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


async def test_a_request_without_a_token_is_401_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers")

    assert_error(response, 401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_token_signed_with_another_secret_is_401(client: httpx.AsyncClient) -> None:
    forged = mint_token(secrets.token_urlsafe(48), Role.ADMIN, "mallory")

    response = await client.get("/v1/branches", headers={"Authorization": f"Bearer {forged}"})

    error = assert_error(response, 401, "UNAUTHENTICATED")
    assert "signature" in str(error["message"])


async def test_an_expired_token_is_401(client: httpx.AsyncClient, running_system: RunningSystem) -> None:
    expired = mint_token(running_system.jwt_secret, Role.ADMIN, "a", now=time.time() - 7200)

    response = await client.get("/v1/branches", headers={"Authorization": f"Bearer {expired}"})

    error = assert_error(response, 401, "UNAUTHENTICATED")
    assert "expired" in str(error["message"])


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/customers"), ("GET", "/v1/branches"), ("POST", "/v1/applications/a-1/approve")],
)
async def test_the_service_role_is_403_on_customer_context_routes(
    client: httpx.AsyncClient, running_system: RunningSystem, method: str, path: str
) -> None:
    body = {"version": 1} if method == "POST" else None
    response = await client.request(method, path, json=body, headers=bearer(running_system, Role.SERVICE))

    assert_error(response, 403, "PERMISSION_DENIED")


async def test_a_customer_reading_another_customer_gets_404_not_403(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    response = await client.get("/v1/customers/cust-b", headers=bearer(running_system, Role.CUSTOMER, "cust-a"))

    error = assert_error(response, 404, "NOT_FOUND")
    assert error["message"] == "customer cust-b not found"


async def test_an_admin_request_reaches_the_customer_service_and_its_status_comes_back(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    headers = bearer(running_system, Role.ADMIN)
    unknown = await client.get("/v1/customers/0193a000-0000-7000-8000-00000000ffff", headers=headers)
    malformed = await client.get("/v1/customers/c-unknown", headers=headers)

    assert_error(unknown, 404, "NOT_FOUND")
    error = assert_error(malformed, 400, "INVALID_ARGUMENT")
    assert error["details"] == [{"field": "id", "description": "must be an id issued by loanbook (a UUID)"}]


async def test_malformed_json_is_400_naming_the_problem(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    headers = {**bearer(running_system, Role.ADMIN), "Content-Type": "application/json"}

    response = await client.post("/v1/branches", content=b'{"code": "B1",', headers=headers)

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert "malformed JSON" in str(error["message"])


async def test_wrong_types_and_unknown_fields_are_400_naming_each_field(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    body = {"customerId": "c", "termMonths": "twelve", "principal": {"currencyCode": "EUR", "units": 1}, "x": 1}

    response = await client.post("/v1/applications", json=body, headers=bearer(running_system, Role.OFFICER))

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert {detail["field"] for detail in error["details"]} == {"termMonths", "x"}  # type: ignore[attr-defined]
    assert "twelve" not in response.text  # the caller's input is never echoed


async def test_an_unknown_status_filter_is_400_naming_status(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    response = await client.get("/v1/applications?status=APPROVED-ISH", headers=bearer(running_system, Role.ADMIN))

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert [detail["field"] for detail in error["details"]] == ["status"]  # type: ignore[attr-defined]


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, running_system: RunningSystem) -> None:
    oversized = json.dumps({"code": "B1", "name": "x" * (1024 * 1024)})

    response = await client.post(
        "/v1/branches",
        content=oversized,
        headers={**bearer(running_system, Role.ADMIN), "Content-Type": "application/json"},
    )

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_an_unknown_route_is_404_and_a_wrong_method_405_in_the_error_body(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert_error(await client.delete("/v1/branches"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("path", ["/v1/customers/not-a-uuid", "/v1/branches/not-a-uuid", "/v1/applications/not-a-uuid"])
async def test_a_malformed_id_in_the_path_is_400_naming_the_path_parameter(
    client: httpx.AsyncClient, running_system: RunningSystem, path: str
) -> None:
    response = await client.get(path, headers=bearer(running_system, Role.ADMIN))

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"] == "invalid request: id"
    assert [detail["field"] for detail in error["details"]] == ["id"]  # type: ignore[attr-defined]


async def test_a_services_refusal_names_json_fields_in_the_message_as_in_the_details(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    body = {
        "customerId": str(uuid.uuid4()),
        "officerId": str(uuid.uuid4()),
        "termMonths": 12,
        "principal": {"currencyCode": "XXX", "units": 5000},
        "purpose": "car",
    }

    response = await client.post("/v1/applications", json=body, headers=bearer(running_system, Role.ADMIN))

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"] == "invalid request: principal.currencyCode"
    assert [detail["field"] for detail in error["details"]] == ["principal.currencyCode"]  # type: ignore[attr-defined]


async def test_the_openapi_document_lists_the_400_it_returns_not_a_422_and_readiness_503(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()

    statuses = {
        (method, path): set(operation["responses"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert not [operation for operation, listed in statuses.items() if "422" in listed]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "400" in statuses[("post", "/v1/applications")]
    assert statuses[("get", "/readyz")] == {"200", "503"}
    assert document["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


PROBES = {"/livez", "/healthz", "/readyz", "/metrics"}


async def test_the_trace_id_header_is_the_callers_trace_id(client: httpx.AsyncClient) -> None:
    trace_id = secrets.token_hex(16)

    traced = await client.get("/v1/nothing-here", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
    untraced = await client.get("/v1/nothing-here")
    probe = await client.get("/healthz", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})

    assert traced.headers["X-Trace-Id"] == trace_id
    assert re.fullmatch(r"[0-9a-f]{32}", untraced.headers["X-Trace-Id"])
    assert untraced.headers["X-Trace-Id"] != trace_id
    assert "X-Trace-Id" not in probe.headers  # probes are not traced, so there is no trace to name


async def test_the_openapi_document_describes_every_route_parameter_and_the_bearer_scheme(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    docs = await client.get("/docs")

    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    assert operations >= BRIEF_CUSTOMER_ROUTES | {("get", "/healthz"), ("get", "/readyz")}
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    for method, path in BRIEF_CUSTOMER_ROUTES:
        operation = document["paths"][path][method]
        assert operation["security"] == [{"HTTPBearer": []}], (method, path)
        assert "200" in operation["responses"] or "201" in operation["responses"], (method, path)
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    list_parameters = {p["name"] for p in document["paths"]["/v1/applications"]["get"]["parameters"]}
    assert list_parameters == {"customerId", "officerId", "branchId", "status", "pageSize", "pageToken"}
    assert docs.status_code == 200


async def test_access_log_lines_name_the_route_template_not_ids_tokens_or_query(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    customer_id = str(uuid.uuid4())  # a well-formed id no customer has: the service answers NOT_FOUND
    headers = bearer(running_system, Role.CUSTOMER, customer_id)
    await client.get(f"/v1/customers/{customer_id}?pageToken=private", headers=headers)
    await asyncio.sleep(0.2)

    log = running_system.processes["gateway"].log()
    access = [json.loads(line) for line in log.splitlines() if '"logger": "gateway.access"' in line]
    own_record = [entry for entry in access if entry["http_route"] == "/v1/customers/{id}"]
    assert own_record, access
    assert all(entry["http_method"] == "GET" and entry["duration_ms"] >= 0 for entry in own_record)
    assert own_record[-1]["http_status"] == 404  # this test's request is the latest on that route
    requests = [entry for entry in access if entry["http_route"] not in PROBES]  # probes are not traced
    assert all(re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"]) for entry in requests)
    assert customer_id not in log
    assert "private" not in log
    assert headers["Authorization"].split()[1] not in log


async def test_a_gateway_with_a_placeholder_secret_outside_development_refuses_to_start(
    running_system: RunningSystem,
) -> None:
    env = {
        **os.environ,
        **running_system.apps["gateway"].env,
        "LOANBOOK_GATEWAY_ENVIRONMENT": "production",
        "LOANBOOK_GATEWAY_JWT_SECRET": "change-me",
    }
    code, output, _ = await run_module("gateway", env, stderr_into_stdout=True)

    assert code == 2
    assert "LOANBOOK_GATEWAY_JWT_SECRET" in output
    assert "change-me" not in output
