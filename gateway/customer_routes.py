"""REST routes of the customer context: check the HTTP shape and the caller's role, make one gRPC call, convert.

Per-customer authorization is enforced here, at the edge: the services receive the caller (chassis.identity), but
the customer service trusts whoever may connect to it (mTLS decides that). Customers may read branches and
officers: they choose the officer when they apply. A customer asking for another customer's record or application
gets 404, the same answer as for an id that does not exist, so ids cannot be probed; for lists the filter is the
caller's own id, and asking for someone else's list is 403 (there is no id to hide: the refusal does not depend on
what exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import grpc
import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from google.protobuf.message import Message

from chassis.errors import NotFound
from chassis.identity import Caller, Role
from gateway import customer_models as m
from gateway.auth import AdminCaller, PersonCaller, StaffCaller
from gateway.errors import ApiError
from gateway.proto_json import message_to_json
from gateway.upstream import RequestT, UpstreamService
from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": m.ErrorBody, "description": description}
    for status, description in {
        400: "Bad input (INVALID_ARGUMENT); `details` names each field",
        401: "Missing, malformed, expired or untrusted bearer token (UNAUTHENTICATED)",
        403: "The caller's role may not do this (PERMISSION_DENIED)",
        404: "No such resource, or not one the caller may see (NOT_FOUND)",
        409: "Conflict: already exists, illegal workflow step or stale version",
        413: "Request body too large (PAYLOAD_TOO_LARGE)",
        500: "A bug (INTERNAL); the message carries no detail, the log does",
        501: "The service does not implement this call yet (UNIMPLEMENTED)",
        503: "The service is unavailable; retry later (UNAVAILABLE)",
        504: "The service did not answer in time (DEADLINE_EXCEEDED)",
    }.items()
}

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


@dataclass(frozen=True)
class CustomerService(UpstreamService):
    """The customer service stub, called with the gateway's deadline and the caller's identity."""

    name: ClassVar[str] = "customer"
    stub: customer_pb2_grpc.CustomerServiceAsyncStub
    deadline_seconds: float


# The service dependencies are `async def` although they only read app.state: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop per request (bench/gateway_overhead.py).
async def customer_service(request: Request) -> CustomerService:
    service: CustomerService = request.app.state.customer_service
    return service


Customers = Annotated[CustomerService, Depends(customer_service)]
ResourceId = Annotated[str, Path(min_length=1, max_length=128, description="the resource's opaque id")]
PageSize = Annotated[
    int, Query(alias="pageSize", ge=0, le=m.INT32_MAX, description="at most this many; 0 = the service's default")
]
PageToken = Annotated[
    str, Query(alias="pageToken", max_length=4096, description="`nextPageToken` of the previous page")
]
BranchFilter = Annotated[str, Query(alias="branchId", max_length=128)]


def path_id(proto_field: str) -> dict[str, str]:
    """`rest_fields` for a call whose `proto_field` comes from the route's `{id}`: a violation names `id`."""
    return {proto_field: "id"}


def proto_request(message: RequestT, body: m.ProtoJson | None = None, **fields: Any) -> RequestT:
    """`message` filled from a validated body (canonical JSON) plus fields from the path and query."""
    json_format.ParseDict({**(body.to_proto_json() if body else {}), **fields}, message)
    return message


class ProtoJsonResponse(JSONResponse):
    """A JSON body written by orjson: the same compact UTF-8 bytes as JSONResponse's json.dumps for what
    message_to_json gives (strings, ints, bools, lists, dicts with string keys), in a fraction of the time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(message: Message, status_code: int = 200) -> JSONResponse:
    # Returned as a Response, so FastAPI does not re-validate it against the response model: the mirrors are
    # checked against the protos in the unit tests, and schemathesis checks real answers against the document.
    return ProtoJsonResponse(message_to_json(message), status_code=status_code)


def not_found(resource: str, resource_id: str) -> ApiError:
    # Same words as the service's NotFound, so "not yours" and "does not exist" cannot be told apart.
    return ApiError(grpc.StatusCode.NOT_FOUND, str(NotFound(resource, resource_id)))


def only_own_customer(caller: Caller, customer_id: str) -> str:
    """The customer id a list or submission is for: a customer's own, whatever it asked (a different one → 403)."""
    if caller.role is not Role.CUSTOMER:
        return customer_id
    assert caller.customer_id is not None
    if customer_id and customer_id != caller.customer_id:
        raise ApiError(grpc.StatusCode.PERMISSION_DENIED, "a customer may only act on its own customerId")
    return caller.customer_id


# Branches


@router.post("/branches", status_code=201, response_model=m.Branch, tags=["branches"], summary="Create a branch")
async def create_branch(body: m.CreateBranchBody, caller: AdminCaller, customers: Customers) -> JSONResponse:
    response = await customers.call(customers.stub.CreateBranch, proto_request(pb.CreateBranchRequest(), body), caller)
    return json_response(response.branch, 201)


@router.get("/branches", response_model=m.ListBranchesResponse, tags=["branches"], summary="List branches")
async def list_branches(
    caller: PersonCaller, customers: Customers, page_size: PageSize = 0, page_token: PageToken = ""
) -> JSONResponse:
    request = pb.ListBranchesRequest(page_size=page_size, page_token=page_token)
    response = await customers.call(customers.stub.ListBranches, request, caller)
    return json_response(response)


@router.get("/branches/{id}", response_model=m.Branch, tags=["branches"], summary="One branch")
async def get_branch(id: ResourceId, caller: PersonCaller, customers: Customers) -> JSONResponse:
    response = await customers.call(
        customers.stub.GetBranch, pb.GetBranchRequest(branch_id=id), caller, path_id("branch_id")
    )
    return json_response(response.branch)


@router.get(
    "/branches/{id}/portfolio",
    response_model=m.GetBranchPortfolioResponse,
    tags=["branches"],
    summary="Counts and principal by application status, overall and per officer",
)
async def get_branch_portfolio(id: ResourceId, caller: StaffCaller, customers: Customers) -> JSONResponse:
    request = pb.GetBranchPortfolioRequest(branch_id=id)
    response = await customers.call(customers.stub.GetBranchPortfolio, request, caller, path_id("branch_id"))
    return json_response(response)


# Loan officers


@router.post(
    "/officers", status_code=201, response_model=m.LoanOfficer, tags=["officers"], summary="Create a loan officer"
)
async def create_officer(body: m.CreateLoanOfficerBody, caller: AdminCaller, customers: Customers) -> JSONResponse:
    request = proto_request(pb.CreateLoanOfficerRequest(), body)
    return json_response((await customers.call(customers.stub.CreateLoanOfficer, request, caller)).officer, 201)


@router.get("/officers", response_model=m.ListLoanOfficersResponse, tags=["officers"], summary="List loan officers")
async def list_officers(
    caller: PersonCaller,
    customers: Customers,
    branch_id: BranchFilter = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    request = pb.ListLoanOfficersRequest(branch_id=branch_id, page_size=page_size, page_token=page_token)
    response = await customers.call(customers.stub.ListLoanOfficers, request, caller)
    return json_response(response)


@router.get("/officers/{id}", response_model=m.LoanOfficer, tags=["officers"], summary="One loan officer")
async def get_officer(id: ResourceId, caller: PersonCaller, customers: Customers) -> JSONResponse:
    request = pb.GetLoanOfficerRequest(officer_id=id)
    response = await customers.call(customers.stub.GetLoanOfficer, request, caller, path_id("officer_id"))
    return json_response(response.officer)


# Customers


@router.post(
    "/customers", status_code=201, response_model=m.Customer, tags=["customers"], summary="Register a customer"
)
async def create_customer(body: m.CreateCustomerBody, caller: StaffCaller, customers: Customers) -> JSONResponse:
    request = proto_request(pb.CreateCustomerRequest(), body)
    return json_response((await customers.call(customers.stub.CreateCustomer, request, caller)).customer, 201)


@router.get("/customers", response_model=m.ListCustomersResponse, tags=["customers"], summary="List customers")
async def list_customers(
    caller: StaffCaller,
    customers: Customers,
    branch_id: BranchFilter = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    request = pb.ListCustomersRequest(branch_id=branch_id, page_size=page_size, page_token=page_token)
    response = await customers.call(customers.stub.ListCustomers, request, caller)
    return json_response(response)


@router.get(
    "/customers/{id}", response_model=m.Customer, tags=["customers"], summary="One customer (a customer: only itself)"
)
async def get_customer(id: ResourceId, caller: PersonCaller, customers: Customers) -> JSONResponse:
    if caller.role is Role.CUSTOMER and not caller.is_customer(id):
        raise not_found("customer", id)
    request = pb.GetCustomerRequest(customer_id=id)
    response = await customers.call(customers.stub.GetCustomer, request, caller, path_id("customer_id"))
    return json_response(response.customer)


@router.patch(
    "/customers/{id}",
    response_model=m.Customer,
    tags=["customers"],
    summary="Change a customer's name, email or phone (a customer: only itself)",
)
async def update_customer(
    id: ResourceId,
    body: m.UpdateCustomerBody,
    caller: PersonCaller,
    customers: Customers,
) -> JSONResponse:
    if caller.role is Role.CUSTOMER and not caller.is_customer(id):
        raise not_found("customer", id)
    request = proto_request(pb.UpdateCustomerRequest(), body, customerId=id)
    response = await customers.call(customers.stub.UpdateCustomer, request, caller, path_id("customer_id"))
    return json_response(response.customer)


# Loan applications


@router.post(
    "/applications",
    status_code=201,
    response_model=m.LoanApplication,
    tags=["applications"],
    summary="Submit a loan application (a customer: for itself)",
)
async def submit_application(
    body: m.SubmitLoanApplicationBody, caller: PersonCaller, customers: Customers
) -> JSONResponse:
    customer_id = only_own_customer(caller, body.customer_id)
    request = proto_request(pb.SubmitLoanApplicationRequest(), body, customerId=customer_id)
    return json_response((await customers.call(customers.stub.SubmitLoanApplication, request, caller)).application, 201)


@router.get(
    "/applications",
    response_model=m.ListLoanApplicationsResponse,
    tags=["applications"],
    summary="List loan applications by customer, officer, branch and status (a customer: its own)",
)
async def list_applications(
    caller: PersonCaller,
    customers: Customers,
    customer_id: Annotated[str, Query(alias="customerId", max_length=128)] = "",
    officer_id: Annotated[str, Query(alias="officerId", max_length=128)] = "",
    branch_id: BranchFilter = "",
    status: Annotated[m.ApplicationStatus, Query()] = m.ApplicationStatus.UNSPECIFIED,
    page_size: PageSize = 0,
    page_token: PageToken = "",
) -> JSONResponse:
    request = pb.ListLoanApplicationsRequest(
        customer_id=only_own_customer(caller, customer_id),
        officer_id=officer_id,
        branch_id=branch_id,
        status=pb.ApplicationStatus.Value(status.value),
        page_size=page_size,
        page_token=page_token,
    )
    response = await customers.call(customers.stub.ListLoanApplications, request, caller)
    return json_response(response)


async def _application_visible_to(caller: Caller, application_id: str, customers: Customers) -> pb.LoanApplication:
    request = pb.GetLoanApplicationRequest(application_id=application_id)
    response = await customers.call(customers.stub.GetLoanApplication, request, caller, path_id("application_id"))
    application = response.application
    if caller.role is Role.CUSTOMER and not caller.is_customer(application.customer_id):
        raise not_found("loan application", application_id)
    return application


@router.get(
    "/applications/{id}",
    response_model=m.LoanApplication,
    tags=["applications"],
    summary="One loan application (a customer: only its own)",
)
async def get_application(id: ResourceId, caller: PersonCaller, customers: Customers) -> JSONResponse:
    return json_response(await _application_visible_to(caller, id, customers))


@router.post(
    "/applications/{id}/{action}",
    response_model=m.LoanApplication,
    tags=["applications"],
    summary="Move an application along its workflow",
    description="review, approve, reject, fund and close: officers and admins. withdraw: also the customer who "
    "applied. An illegal move is 409 FAILED_PRECONDITION, a stale `version` 409 ABORTED.",
)
async def transition_application(
    id: ResourceId,
    action: m.ApplicationAction,
    body: m.TransitionBody,
    caller: PersonCaller,
    customers: Customers,
) -> JSONResponse:
    if caller.role is Role.CUSTOMER:
        if action is not m.ApplicationAction.WITHDRAW:
            raise ApiError(grpc.StatusCode.PERMISSION_DENIED, f"a customer may not {action.value} an application")
        # Ownership needs the application: one extra read, only for customers.
        await _application_visible_to(caller, id, customers)
    request = pb.TransitionLoanApplicationRequest(
        application_id=id,
        action=pb.ApplicationAction.Value(action.proto_name),
        version=body.version,
        reason=body.reason,
    )
    response = await customers.call(
        customers.stub.TransitionLoanApplication, request, caller, path_id("application_id")
    )
    return json_response(response.application)
