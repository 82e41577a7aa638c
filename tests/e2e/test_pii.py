"""No stored value reaches telemetry: a duplicate e-mail is refused with 409, and the e-mail appears in no span
(attribute, event, status) of any process and in no log line, on the real processes exporting to a real receiver."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from chassis.identity import Role
from services.customer.demo import BRANCHES
from tests.support.otlp_receiver import ReceivedSpan
from tests.support.rest import assert_error, bearer
from tests.support.system import RunningSystem

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
ERROR = trace_pb2.Status.STATUS_CODE_ERROR


@pytest.fixture(scope="module")
async def client(running_system: RunningSystem) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running_system.gateway_url, timeout=10) as client:
        yield client


def _customer(email: str) -> dict[str, object]:
    return {
        "branchId": str(BRANCHES[0].id),
        "name": "Pat Private",
        "email": email,
        "phone": "+12125550199",
        "dateOfBirth": {"year": 1990, "month": 4, "day": 2},
        "nationalId": "PII-" + secrets.token_hex(4),
    }


async def test_a_duplicate_email_is_409_and_the_email_reaches_no_span_and_no_log_line(
    client: httpx.AsyncClient, running_system: RunningSystem
) -> None:
    email = f"pii-{secrets.token_hex(6)}@example.test"
    officer = bearer(running_system, Role.OFFICER)
    created = await client.post("/v1/customers", json=_customer(email), headers=officer)
    assert created.status_code == 201, created.text

    # The unique index is on lower(email): the same address in other letters clashes, and PostgreSQL's DETAIL
    # would quote the stored (lower-cased) value.
    duplicate = await client.post("/v1/customers", json=_customer(email.upper()), headers=officer)

    error = assert_error(duplicate, 409, "ALREADY_EXISTS")
    assert error["message"] == "a customer with this email already exists"
    trace_id = duplicate.headers["X-Trace-Id"]

    def arrived(spans: list[ReceivedSpan]) -> bool:
        ours = [span for span in spans if span.trace_id == trace_id]
        return (
            any(s.service_name == "loanbook-gateway" and s.kind == SERVER for s in ours)
            and any(s.service_name == "loanbook-customer" and s.kind == SERVER for s in ours)
            # The failing INSERT's span: the place PostgreSQL's message would be recorded.
            and any(s.service_name == "loanbook-customer" and s.kind == CLIENT and s.status_code == ERROR for s in ours)
        )

    await running_system.receiver.wait_until(arrived, timeout=15)
    spans = list(running_system.receiver.spans)
    (insert,) = [
        s for s in spans if s.trace_id == trace_id and s.service_name == "loanbook-customer" and s.status_code == ERROR
    ]
    # What failed is still there to see, by class and SQLSTATE.
    assert insert.kind == CLIENT
    assert (insert.attributes["error.type"], insert.attributes["db.response.status_code"]) == (
        "UniqueViolationError",
        "23505",
    )
    for span in spans:  # every span of every process so far, the create and the refusal among them
        for text in (span.text, span.status_message, repr(span.events), repr(span.attributes)):
            assert email not in text.lower(), f"{span.service_name} span {span.name!r} carries the e-mail:\n{text}"
            assert "DETAIL" not in text, f"{span.service_name} span {span.name!r} carries a PostgreSQL DETAIL"

    for name, process in running_system.processes.items():
        assert email not in process.log().lower(), f"the {name} log carries the e-mail"

    admin = bearer(running_system, Role.ADMIN)
    shipped = await client.get("/v1/logs", params={"traceId": trace_id}, headers=admin)
    assert shipped.status_code == 200, shipped.text
    assert email not in shipped.text.lower()
