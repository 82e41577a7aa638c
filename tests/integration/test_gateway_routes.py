"""The gateway's customer routes over real gRPC to a fake customer service that keeps state: what reaches the
service (caller identity, request fields), what comes back (resources, field violations), and who may see what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest

from chassis.config import GrpcServiceSettings
from chassis.errors import FieldViolation, InvalidArgument, NotFound
from chassis.grpc_server import GrpcServer, ServiceBinding
from chassis.identity import Caller, Role, caller_from_metadata
from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.tokens import mint_token
from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc

SECRET = "integration-secret-that-is-long-enough-for-hs256"
SERVICE_NAME = "loanbook.customer.v1.CustomerService"


@dataclass
class FakeCustomerService(customer_pb2_grpc.CustomerServiceServicer):
    """Applications in a dict; remembers who called and with what, as the real service will see it."""

    applications: dict[str, pb.LoanApplication] = field(default_factory=dict)
    calls: list[tuple[str, Caller | None, Any]] = field(default_factory=list)

    def _record(self, name: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls.append((name, caller_from_metadata(context.invocation_metadata()), request))

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateCustomerResponse:
        self._record("CreateCustomer", request, context)
        raise InvalidArgument([FieldViolation("date_of_birth", "must be in the past")])

    async def GetLoanApplication(
        self, request: pb.GetLoanApplicationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetLoanApplicationResponse:
        self._record("GetLoanApplication", request, context)
        if request.application_id not in self.applications:
            raise NotFound("loan application", request.application_id)
        return pb.GetLoanApplicationResponse(application=self.applications[request.application_id])

    async def ListLoanApplications(
        self, request: pb.ListLoanApplicationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListLoanApplicationsResponse:
        self._record("ListLoanApplications", request, context)
        found = [
            a for a in self.applications.values() if not request.customer_id or a.customer_id == request.customer_id
        ]
        return pb.ListLoanApplicationsResponse(applications=found, next_page_token="")

    async def TransitionLoanApplication(
        self, request: pb.TransitionLoanApplicationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TransitionLoanApplicationResponse:
        self._record("TransitionLoanApplication", request, context)
        application = self.applications[request.application_id]
        application.status = pb.APPLICATION_STATUS_WITHDRAWN
        application.version += 1
        return pb.TransitionLoanApplicationResponse(application=application)


@dataclass
class Harness:
    client: httpx.AsyncClient
    service: FakeCustomerService

    def headers(self, role: Role, customer_id: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(SECRET, role, f'sub-{role.value}', customer_id=customer_id)}"}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    # The RPCs it leaves out answer UNIMPLEMENTED from the generated base class, as the stubs' abstract marks say.
    service = FakeCustomerService()  # type: ignore[abstract]
    service.applications["app-a"] = pb.LoanApplication(
        id="app-a", customer_id="cust-a", status=pb.APPLICATION_STATUS_SUBMITTED, version=3
    )
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: customer_pb2_grpc.add_CustomerServiceServicer_to_server(service, server)
    )
    server = GrpcServer(GrpcServiceSettings(grpc_port=0), [binding])
    await server.start()
    settings = GatewaySettings(
        customer_addr=server.address,
        payment_addr=server.address,
        logging_addr=server.address,
        environment="test",
        jwt_secret=SECRET,
        max_body_bytes=4096,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield Harness(client, service)
    finally:
        await server.stop(grace=0)


async def test_the_service_receives_the_callers_identity_as_metadata(harness: Harness) -> None:
    await harness.client.get("/v1/applications/app-a", headers=harness.headers(Role.OFFICER))
    await harness.client.get("/v1/applications/app-a", headers=harness.headers(Role.CUSTOMER, "cust-a"))

    assert [caller for _, caller, _ in harness.service.calls] == [
        Caller(Role.OFFICER, "sub-officer"),
        Caller(Role.CUSTOMER, "sub-customer", customer_id="cust-a"),
    ]


async def test_a_resource_comes_back_in_protobuf_json_with_every_field(harness: Harness) -> None:
    response = await harness.client.get("/v1/applications/app-a", headers=harness.headers(Role.ADMIN))

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "app-a"
    assert body["customerId"] == "cust-a"
    assert body["status"] == "APPLICATION_STATUS_SUBMITTED"
    assert body["version"] == "3"  # int64 is a string in protobuf JSON
    assert body["officerId"] == ""


async def test_field_violations_from_the_service_come_back_with_json_field_names(harness: Harness) -> None:
    body = {"branchId": "b", "name": "N", "dateOfBirth": {"year": 2999, "month": 1, "day": 1}}

    response = await harness.client.post("/v1/customers", json=body, headers=harness.headers(Role.OFFICER))

    assert response.status_code == 400
    assert response.json()["error"]["details"] == [{"field": "dateOfBirth", "description": "must be in the past"}]
    sent = harness.service.calls[0][2]
    assert sent.date_of_birth.year == 2999
    assert sent.branch_id == "b"


async def test_a_customer_reading_another_customers_application_gets_the_same_404_as_a_missing_one(
    harness: Harness,
) -> None:
    someone_elses = await harness.client.get("/v1/applications/app-a", headers=harness.headers(Role.CUSTOMER, "cust-b"))
    missing = await harness.client.get("/v1/applications/app-zz", headers=harness.headers(Role.CUSTOMER, "cust-b"))

    assert someone_elses.status_code == missing.status_code == 404
    assert someone_elses.json()["error"]["message"] == "loan application app-a not found"
    assert missing.json()["error"]["message"] == "loan application app-zz not found"


async def test_a_customers_application_list_is_filtered_to_itself(harness: Harness) -> None:
    own = await harness.client.get("/v1/applications", headers=harness.headers(Role.CUSTOMER, "cust-a"))
    others = await harness.client.get(
        "/v1/applications?customerId=cust-b", headers=harness.headers(Role.CUSTOMER, "cust-a")
    )

    assert own.status_code == 200
    assert [a["id"] for a in own.json()["applications"]] == ["app-a"]
    assert harness.service.calls[-1][2].customer_id == "cust-a"
    assert others.status_code == 403
    assert len(harness.service.calls) == 1  # refused before reaching the service


async def test_a_customer_may_withdraw_its_own_application_but_not_someone_elses(harness: Harness) -> None:
    stranger = await harness.client.post(
        "/v1/applications/app-a/withdraw", json={"version": 3}, headers=harness.headers(Role.CUSTOMER, "cust-b")
    )
    owner = await harness.client.post(
        "/v1/applications/app-a/withdraw",
        json={"version": 3, "reason": "changed my mind"},
        headers=harness.headers(Role.CUSTOMER, "cust-a"),
    )

    assert stranger.status_code == 404
    assert owner.status_code == 200
    assert owner.json()["status"] == "APPLICATION_STATUS_WITHDRAWN"
    transition = harness.service.calls[-1][2]
    assert transition.action == pb.APPLICATION_ACTION_WITHDRAW
    assert (transition.version, transition.reason) == (3, "changed my mind")


async def test_a_streamed_body_over_the_limit_is_413_even_without_a_content_length(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"code": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}'

    response = await harness.client.post(
        "/v1/branches",
        content=chunks(),
        headers={**harness.headers(Role.ADMIN), "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["message"] == "the request body is larger than 4096 bytes"
