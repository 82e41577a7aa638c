"""The gateway's payment routes against the real processes: the journey, idempotency, bad input, authorization."""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chassis.identity import Role
from services.customer.demo import APPLICATIONS, CUSTOMERS
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN
from tests.support.rest import assert_error, bearer, rfc3339
from tests.support.system import RunningSystem

DEVON = str(CUSTOMERS[1].id)
DEVONS_LOAN = str(APPLICATIONS[1][0].id)

BRIEF_PAYMENT_ROUTES = {
    ("post", "/v1/payments"),
    ("get", "/v1/payments/{id}"),
    ("post", "/v1/payments/{id}/reverse"),
    ("get", "/v1/customers/{id}/payments"),
    ("get", "/v1/loans/{id}/payments"),
}


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


def payment_body(customer_id: str = CASEY, loan_id: str = CASEY_FUNDED_LOAN, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerId": customer_id,
        "loanId": loan_id,
        "amount": {"currencyCode": "USD", "units": "120", "nanos": 500_000_000},
        "method": "PAYMENT_METHOD_CARD",
    }
    body.update(overrides)
    return body


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": f"gw-e2e-{secrets.token_hex(8)}"}


async def record(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/v1/payments", json=body or payment_body(), headers={**headers, **new_key()})
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()["payment"]
    return payment


async def test_record_get_page_through_history_list_by_loan_and_reverse(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    casey = bearer(running_system, Role.CUSTOMER, CASEY)
    officer = bearer(running_system, Role.OFFICER)
    # A window of its own in the past, so payments other tests record do not interleave with these three.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=random.randint(10**6, 10**8))
    recorded = [
        await record(client, casey, payment_body(paidTime=rfc3339(start + timedelta(seconds=offset))))
        for offset in range(3)
    ]

    fetched = await client.get(f"/v1/payments/{recorded[0]['id']}", headers=casey)
    window: dict[str, str | int] = {"from": rfc3339(start), "to": rfc3339(start + timedelta(seconds=3)), "pageSize": 2}
    first = await client.get(f"/v1/customers/{CASEY}/payments", params=window, headers=casey)
    token = first.json()["nextPageToken"]
    second = await client.get(f"/v1/customers/{CASEY}/payments", params={**window, "pageToken": token}, headers=casey)
    by_loan = await client.get(f"/v1/loans/{CASEY_FUNDED_LOAN}/payments", params={"pageSize": 500}, headers=casey)

    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == recorded[0]
    assert recorded[0]["status"] == "PAYMENT_STATUS_SETTLED"
    assert recorded[0]["amount"] == {"currencyCode": "USD", "units": "120", "nanos": 500_000_000}
    assert recorded[0]["version"] == "1"
    assert first.status_code == 200, first.text
    assert [p["id"] for p in first.json()["payments"]] == [recorded[2]["id"], recorded[1]["id"]]  # newest first
    assert token
    assert second.status_code == 200, second.text
    assert [p["id"] for p in second.json()["payments"]] == [recorded[0]["id"]]
    assert second.json()["nextPageToken"] == ""
    assert by_loan.status_code == 200, by_loan.text
    assert {p["id"] for p in recorded} <= {p["id"] for p in by_loan.json()["payments"]}

    reverse_path = f"/v1/payments/{recorded[0]['id']}/reverse"
    reversed_ = await client.post(reverse_path, json={"version": 1, "reason": "card chargeback"}, headers=officer)
    stale = await client.post(reverse_path, json={"version": 1, "reason": "again"}, headers=officer)

    assert reversed_.status_code == 200, reversed_.text
    assert (reversed_.json()["status"], reversed_.json()["version"]) == ("PAYMENT_STATUS_REVERSED", "2")
    assert_error(stale, 409, "ABORTED")


async def test_a_retry_with_the_same_idempotency_key_returns_the_original_payment_with_200(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    headers = {**bearer(running_system, Role.CUSTOMER, CASEY), **new_key()}
    body = payment_body(customerId="")  # a customer may leave its own id out

    first = await client.post("/v1/payments", json=body, headers=headers)
    again = await client.post("/v1/payments", json=body, headers=headers)
    changed = await client.post("/v1/payments", json=payment_body(method="PAYMENT_METHOD_WIRE"), headers=headers)

    assert first.status_code == 201, first.text
    assert first.json()["replayed"] is False
    assert first.json()["payment"]["customerId"] == CASEY
    assert again.status_code == 200, again.text
    assert again.json() == {"payment": first.json()["payment"], "replayed": True}
    assert_error(changed, 409, "FAILED_PRECONDITION")


async def test_a_payment_without_an_idempotency_key_is_400_naming_the_header(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    headers = bearer(running_system, Role.OFFICER)

    missing = await client.post("/v1/payments", json=payment_body(), headers=headers)
    empty = await client.post("/v1/payments", json=payment_body(), headers={**headers, "Idempotency-Key": ""})

    for response in (missing, empty):
        error = assert_error(response, 400, "INVALID_ARGUMENT")
        assert "Idempotency-Key" in str(error["message"])
        assert [detail["field"] for detail in error["details"]] == ["Idempotency-Key"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("parameter", ["from", "to"])
async def test_a_malformed_time_bound_is_400_naming_the_parameter(
    client: httpx.AsyncClient, running_system: RunningSystem, parameter: str
) -> None:
    response = await client.get(
        f"/v1/customers/{CASEY}/payments",
        params={parameter: "2026-13-01 noon"},
        headers=bearer(running_system, Role.OFFICER),
    )

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["details"] == [{"field": parameter, "description": error["details"][0]["description"]}]  # type: ignore[index]


async def test_bad_body_fields_are_400_in_the_rest_names(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    headers = {**bearer(running_system, Role.OFFICER), **new_key()}

    naive_time = await client.post("/v1/payments", json=payment_body(paidTime="2026-01-01T00:00:00"), headers=headers)
    no_amount = await client.post("/v1/payments", json=payment_body(amount=None), headers=headers)

    assert [d["field"] for d in assert_error(naive_time, 400, "INVALID_ARGUMENT")["details"]] == ["paidTime"]  # type: ignore[attr-defined]
    assert "amount" in [d["field"] for d in assert_error(no_amount, 400, "INVALID_ARGUMENT")["details"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("amount", "field", "description"),
    [
        # One past what int64 minor units hold: once a 500 from the PostgreSQL adapter.
        (
            {"currencyCode": "USD", "units": "92233720368547759"},
            "amount.units",
            "at most 92,233,720,368,547,758.07 USD",
        ),
        ({"currencyCode": "USD", "units": "92233720368547758"}, "amount", "principal, 25,000.00 USD"),
        ({"currencyCode": "USD", "units": "1000000000"}, "amount", "principal, 25,000.00 USD"),
        ({"currencyCode": "USD", "units": "25000", "nanos": 10_000_000}, "amount", "principal, 25,000.00 USD"),
    ],
)
async def test_an_amount_out_of_range_or_over_the_loans_principal_is_400_and_records_nothing(
    client: httpx.AsyncClient, running_system: RunningSystem, amount: dict[str, Any], field: str, description: str
) -> None:
    headers = {**bearer(running_system, Role.OFFICER), **new_key()}

    refused = await client.post("/v1/payments", json=payment_body(amount=amount), headers=headers)
    # The same key with a good body is a new payment, not a replay: the refused request stored nothing.
    whole_principal = payment_body(amount={"currencyCode": "USD", "units": "25000"})
    after = await client.post("/v1/payments", json=whole_principal, headers=headers)

    error = assert_error(refused, 400, "INVALID_ARGUMENT")
    assert error["message"] == f"invalid request: {field}"
    assert [d["field"] for d in error["details"]] == [field]  # type: ignore[attr-defined]
    assert description in error["details"][0]["description"]  # type: ignore[index]
    assert after.status_code == 201, after.text
    assert after.json()["replayed"] is False


async def test_a_customer_cannot_record_for_or_read_another_customer(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    casey = bearer(running_system, Role.CUSTOMER, CASEY)
    devons_payment = await record(client, bearer(running_system, Role.OFFICER), payment_body(DEVON, DEVONS_LOAN))

    for_devon = await client.post("/v1/payments", json=payment_body(DEVON, DEVONS_LOAN), headers={**casey, **new_key()})
    on_devons_loan = await client.post(
        "/v1/payments", json=payment_body(loan_id=DEVONS_LOAN), headers={**casey, **new_key()}
    )
    payment = await client.get(f"/v1/payments/{devons_payment['id']}", headers=casey)
    history = await client.get(f"/v1/customers/{DEVON}/payments", headers=casey)
    loan = await client.get(f"/v1/loans/{DEVONS_LOAN}/payments", headers=casey)
    reverse = await client.post(f"/v1/payments/{devons_payment['id']}/reverse", json={"version": 1}, headers=casey)

    assert_error(for_devon, 403, "PERMISSION_DENIED")
    assert_error(on_devons_loan, 404, "NOT_FOUND")  # the payment service's loan check: not hers reads as unknown
    assert assert_error(payment, 404, "NOT_FOUND")["message"] == f"payment {devons_payment['id']} not found"
    assert assert_error(history, 404, "NOT_FOUND")["message"] == f"customer {DEVON} not found"
    assert assert_error(loan, 404, "NOT_FOUND")["message"] == f"loan {DEVONS_LOAN} not found"
    assert_error(reverse, 403, "PERMISSION_DENIED")


async def test_staff_read_any_customer_and_loan(client: httpx.AsyncClient, running_system: RunningSystem) -> None:
    devons_payment = await record(client, bearer(running_system, Role.OFFICER), payment_body(DEVON, DEVONS_LOAN))
    admin = bearer(running_system, Role.ADMIN)

    fetched = await client.get(f"/v1/payments/{devons_payment['id']}", headers=admin)
    history = await client.get(f"/v1/customers/{DEVON}/payments", params={"pageSize": 500}, headers=admin)
    loan = await client.get(f"/v1/loans/{DEVONS_LOAN}/payments", params={"pageSize": 500}, headers=admin)

    assert fetched.json() == devons_payment
    assert devons_payment["id"] in [p["id"] for p in history.json()["payments"]]
    assert devons_payment["id"] in [p["id"] for p in loan.json()["payments"]]


async def test_an_unknown_customer_or_loan_is_404_for_every_role(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    unknown = str(uuid.uuid4())

    for role in (Role.OFFICER, Role.ADMIN):
        headers = bearer(running_system, role)
        history = await client.get(f"/v1/customers/{unknown}/payments", headers=headers)
        loan = await client.get(f"/v1/loans/{unknown}/payments", headers=headers)

        assert assert_error(history, 404, "NOT_FOUND")["message"] == f"customer {unknown} not found", role
        assert assert_error(loan, 404, "NOT_FOUND")["message"] == f"loan {unknown} not found", role


@pytest.mark.parametrize(
    ("path", "role", "customer_id"),
    [
        ("/v1/customers/not-a-uuid/payments", Role.OFFICER, None),
        ("/v1/loans/not-a-uuid/payments", Role.OFFICER, None),
        ("/v1/loans/not-a-uuid/payments", Role.CUSTOMER, CASEY),
    ],
)
async def test_a_malformed_id_in_a_listing_path_is_400_naming_id(
    client: httpx.AsyncClient, running_system: RunningSystem, path: str, role: Role, customer_id: str | None
) -> None:
    response = await client.get(path, headers=bearer(running_system, role, customer_id))

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert (error["message"], [d["field"] for d in error["details"]]) == ("invalid request: id", ["id"])  # type: ignore[attr-defined]


async def test_a_refused_amount_names_json_fields_in_the_message(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    body = payment_body(amount={"currencyCode": "XXX", "units": "10"})

    response = await client.post(
        "/v1/payments", json=body, headers={**bearer(running_system, Role.OFFICER), **new_key()}
    )

    error = assert_error(response, 400, "INVALID_ARGUMENT")
    assert error["message"] == "invalid request: amount.currencyCode"
    assert [d["field"] for d in error["details"]] == ["amount.currencyCode"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/payments"),
        ("GET", f"/v1/payments/{uuid.uuid4()}"),
        ("POST", f"/v1/payments/{uuid.uuid4()}/reverse"),
        ("GET", f"/v1/customers/{CASEY}/payments"),
        ("GET", f"/v1/loans/{CASEY_FUNDED_LOAN}/payments"),
    ],
)
async def test_the_service_role_is_403_on_payment_routes(
    client: httpx.AsyncClient, running_system: RunningSystem, method: str, path: str
) -> None:
    body = (payment_body() if path == "/v1/payments" else {"version": 1}) if method == "POST" else None
    headers = {**bearer(running_system, Role.SERVICE), **new_key()}

    response = await client.request(method, path, json=body, headers=headers)

    assert_error(response, 403, "PERMISSION_DENIED")


async def test_an_unknown_payment_is_404(client: httpx.AsyncClient, running_system: RunningSystem) -> None:
    unknown = str(uuid.uuid4())

    for role, customer_id in ((Role.ADMIN, None), (Role.CUSTOMER, CASEY)):
        response = await client.get(f"/v1/payments/{unknown}", headers=bearer(running_system, role, customer_id))
        assert assert_error(response, 404, "NOT_FOUND")["message"] == f"payment {unknown} not found"


async def test_the_openapi_document_describes_the_payment_routes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()

    operations = {(method, path) for path, item in document["paths"].items() for method in item}
    record_operation = document["paths"]["/v1/payments"]["post"]
    record_headers = {p["name"]: p for p in record_operation["parameters"] if p["in"] == "header"}
    history_parameters = {p["name"] for p in document["paths"]["/v1/customers/{id}/payments"]["get"]["parameters"]}
    assert operations >= BRIEF_PAYMENT_ROUTES
    assert record_headers["Idempotency-Key"]["required"] is True
    assert {"200", "201"} <= set(record_operation["responses"])
    assert "replayed" in record_operation["description"]
    assert history_parameters == {"id", "from", "to", "pageSize", "pageToken"}
