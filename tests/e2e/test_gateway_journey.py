"""The whole journey through the gateway, as people do it: branch, officer, customer, application through its
workflow to funding, payments, paged history, a reversal, and the log lines of one request found by its trace id."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest

from chassis.identity import Role
from tests.support.rest import bearer
from tests.support.system import RunningSystem


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


async def ok(request: Awaitable[httpx.Response], status: int = 200) -> dict[str, Any]:
    response = await request
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_from_a_new_branch_to_a_reversed_payment_and_the_log_lines_of_its_request(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    admin, officer = bearer(running_system, Role.ADMIN), bearer(running_system, Role.OFFICER)
    tag = secrets.token_hex(4)

    branch = await ok(
        client.post(
            "/v1/branches",
            headers=admin,
            json={"code": f"J{tag}".upper(), "name": f"Journey {tag}", "address": "1 Main St"},
        ),
        201,
    )
    clerk = await ok(
        client.post(
            "/v1/officers",
            headers=admin,
            json={"branchId": branch["id"], "name": "Olive Officer", "email": f"olive-{tag}@bank.example"},
        ),
        201,
    )
    person = await ok(
        client.post(
            "/v1/customers",
            headers=officer,
            json={
                "branchId": branch["id"],
                "name": "Jo Journey",
                "email": f"jo-{tag}@mail.example",
                "phone": "+15550100",
                "dateOfBirth": {"year": 1990, "month": 4, "day": 2},
                "nationalId": f"NI{tag}",
            },
        ),
        201,
    )
    customer = bearer(running_system, Role.CUSTOMER, customer_id=person["id"])

    # The customer applies for itself; the officer takes the application through review to funding.
    application = await ok(
        client.post(
            "/v1/applications",
            headers=customer,
            json={
                "officerId": clerk["id"],
                "principal": {"currencyCode": "USD", "units": "12000"},
                "termMonths": 24,
                "annualRateBps": 899,
                "purpose": "car",
            },
        ),
        201,
    )
    for action in ("review", "approve", "fund"):
        application = await ok(
            client.post(
                f"/v1/applications/{application['id']}/{action}",
                headers=officer,
                json={"version": application["version"]},
            )
        )
    assert application["status"] == "APPLICATION_STATUS_FUNDED"
    portfolio = await ok(client.get(f"/v1/branches/{branch['id']}/portfolio", headers=officer))
    assert "FUNDED" in str(portfolio)

    # Five payments by the customer, the history read two at a time, newest first.
    recorded, trace_ids = [], []
    for units in (510, 520, 530, 540, 550):
        response = await client.post(
            "/v1/payments",
            headers={**customer, "Idempotency-Key": secrets.token_hex(8)},
            json={
                "customerId": person["id"],
                "loanId": application["id"],
                "amount": {"currencyCode": "USD", "units": str(units)},
                "method": "PAYMENT_METHOD_ACH",
            },
        )
        assert response.status_code == 201, response.text
        recorded.append(response.json()["payment"])
        trace_ids.append(response.headers["X-Trace-Id"])
    pages, token = [], ""
    while True:
        page = await ok(
            client.get(
                f"/v1/customers/{person['id']}/payments",
                headers=customer,
                params={"pageSize": 2, **({"pageToken": token} if token else {})},
            )
        )
        pages.append([payment["id"] for payment in page.get("payments", [])])
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [payment_id for page in pages for payment_id in page] == [payment["id"] for payment in reversed(recorded)]

    # The customer's last payment is reversed by the officer; a second reversal with the old version is refused.
    last = recorded[-1]
    reversal = await ok(
        client.post(
            f"/v1/payments/{last['id']}/reverse",
            headers=officer,
            json={"version": last["version"], "reason": "bounced"},
        )
    )
    assert (reversal["status"], reversal["version"]) == ("PAYMENT_STATUS_REVERSED", "2")
    stale = await client.post(f"/v1/payments/{last['id']}/reverse", headers=officer, json={"version": "1"})
    assert stale.status_code == 409

    # An SRE hands the first payment's X-Trace-Id to GET /v1/logs: the gateway's, the customer service's (the loan
    # check) and the payment service's lines.
    wanted = {
        ("loanbook-gateway", "POST /v1/payments 201"),
        ("loanbook-customer", "loan standing checked"),
        ("loanbook-payment", "payment recorded"),
    }
    seen: set[tuple[str, str]] = set()
    for _ in range(100):  # shipped in the background, at least once a second
        lines = await ok(client.get("/v1/logs", headers=officer, params={"traceId": trace_ids[0]}))
        seen = {(entry["service"], entry["message"]) for entry in lines.get("entries", [])}
        if wanted <= seen:
            break
        await asyncio.sleep(0.2)
    assert wanted <= seen, f"log lines of the trace: {sorted(seen)}"
    assert all(entry["traceId"] == trace_ids[0] for entry in lines["entries"])
    payment_line = next(entry for entry in lines["entries"] if entry["message"] == "payment recorded")
    assert payment_line["attributes"]["payment_id"] == recorded[0]["id"]
    standing_line = next(entry for entry in lines["entries"] if entry["message"] == "loan standing checked")
    assert standing_line["level"] == "LOG_LEVEL_INFO"
    assert set(standing_line["attributes"]) >= {"loan_id", "customer_id", "exists", "belongs_to_customer", "status"}
