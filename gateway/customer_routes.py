"""REST routes of the customer context: check the HTTP shape and the caller's role, make one gRPC call, convert.

Per-customer authorization is enforced here, at the edge: the services receive the caller (chassis.identity), but
the customer service trusts whoever may connect to it (mTLS decides that). Customers may read branches and
officers: they choose the officer when they apply. A customer asking for another customer's record or application
gets 404, the same answer as for an id that does not exist, so ids cannot be probed; for lists the filter is the
caller's own id, and asking for someone else's list is 403 (there is no id to hide: the refusal does not depend on
what exists).
"""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from chassis.identity import Caller, Role
from gateway import customer_models as m
from gateway.auth import AdminCaller, PersonCaller, StaffCaller
from gateway.dependencies import (
    ERROR_RESPONSES,
    BranchFilter,
    Customers,
    PageSize,
    PageToken,
    ResourceId,
    hide_unless_own,
    json_response,
    only_own_customer,
    path_id,
    proto_request,
)
from gateway.errors import ApiError
from loanbook.customer.v1 import customer_pb2 as pb

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


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
    hide_unless_own(caller, id, "customer", id)
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
    hide_unless_own(caller, id, "customer", id)
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
    hide_unless_own(caller, response.application.customer_id, "loan application", application_id)
    return response.application


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
