"""The CustomerService gRPC servicer: maps proto messages to use-case calls and domain objects back."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.type import date_pb2

from chassis.errors import FieldViolation, InvalidArgument
from chassis.money import MoneyInput
from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc
from services.customer.domain import (
    ApplicationAction,
    ApplicationStatus,
    Branch,
    Customer,
    LoanApplication,
    LoanOfficer,
    StatusTotal,
)
from services.customer.use_cases import (
    ApplicationQuery,
    CustomerChanges,
    CustomerUseCases,
    NewApplication,
    NewCustomer,
)

# Handlers raise domain errors; the chassis interceptor maps them to status codes.
Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _date_from_proto(value: date_pb2.Date) -> date | None:
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        return None


def branch_to_proto(branch: Branch) -> pb.Branch:
    return pb.Branch(
        id=str(branch.id),
        code=branch.code,
        name=branch.name,
        address=branch.address,
        create_time=_timestamp(branch.created_at),
    )


def officer_to_proto(officer: LoanOfficer) -> pb.LoanOfficer:
    return pb.LoanOfficer(
        id=str(officer.id),
        branch_id=str(officer.branch_id),
        name=officer.name,
        email=officer.email,
        create_time=_timestamp(officer.created_at),
    )


def customer_to_proto(customer: Customer) -> pb.Customer:
    born = customer.date_of_birth
    return pb.Customer(
        id=str(customer.id),
        branch_id=str(customer.branch_id),
        name=customer.name,
        email=customer.email,
        phone=customer.phone,
        date_of_birth=date_pb2.Date(year=born.year, month=born.month, day=born.day),
        national_id=customer.national_id,
        version=customer.version,
        create_time=_timestamp(customer.created_at),
        update_time=_timestamp(customer.updated_at),
    )


def status_to_proto(status: ApplicationStatus) -> pb.ApplicationStatus.ValueType:
    return pb.ApplicationStatus.Value(f"APPLICATION_STATUS_{status.value}")


def _status_from_proto(value: pb.ApplicationStatus.ValueType, field: str) -> ApplicationStatus | None:
    if value == pb.APPLICATION_STATUS_UNSPECIFIED:
        return None
    if value not in pb.ApplicationStatus.values():
        raise InvalidArgument([FieldViolation(field, f"unknown application status {value}")])
    return ApplicationStatus(pb.ApplicationStatus.Name(value).removeprefix("APPLICATION_STATUS_"))


def _action_from_proto(value: pb.ApplicationAction.ValueType) -> ApplicationAction | None:
    if value == pb.APPLICATION_ACTION_UNSPECIFIED:
        return None
    if value not in pb.ApplicationAction.values():
        raise InvalidArgument([FieldViolation("action", f"unknown action {value}")])
    return ApplicationAction(pb.ApplicationAction.Name(value).removeprefix("APPLICATION_ACTION_"))


def application_to_proto(application: LoanApplication) -> pb.LoanApplication:
    return pb.LoanApplication(
        id=str(application.id),
        customer_id=str(application.customer_id),
        branch_id=str(application.branch_id),
        officer_id=str(application.officer_id),
        principal=application.principal.to_proto(),
        term_months=application.term_months,
        annual_rate_bps=application.annual_rate_bps,
        purpose=application.purpose,
        status=status_to_proto(application.status),
        version=application.version,
        create_time=_timestamp(application.created_at),
        update_time=_timestamp(application.updated_at),
    )


def _totals_to_proto(totals: list[StatusTotal]) -> list[pb.StatusTotals]:
    return [
        pb.StatusTotals(status=status_to_proto(t.status), count=t.count, principal=t.principal.to_proto())
        for t in totals
    ]


class CustomerServicer(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, use_cases: CustomerUseCases) -> None:
        self._use_cases = use_cases

    async def CreateBranch(self, request: pb.CreateBranchRequest, context: Context) -> pb.CreateBranchResponse:
        branch = await self._use_cases.create_branch(request.code, request.name, request.address)
        return pb.CreateBranchResponse(branch=branch_to_proto(branch))

    async def GetBranch(self, request: pb.GetBranchRequest, context: Context) -> pb.GetBranchResponse:
        return pb.GetBranchResponse(branch=branch_to_proto(await self._use_cases.get_branch(request.branch_id)))

    async def ListBranches(self, request: pb.ListBranchesRequest, context: Context) -> pb.ListBranchesResponse:
        page = await self._use_cases.list_branches(request.page_size, request.page_token)
        return pb.ListBranchesResponse(
            branches=[branch_to_proto(b) for b in page.items], next_page_token=page.next_page_token
        )

    async def GetBranchPortfolio(
        self, request: pb.GetBranchPortfolioRequest, context: Context
    ) -> pb.GetBranchPortfolioResponse:
        portfolio = await self._use_cases.branch_portfolio(request.branch_id)
        return pb.GetBranchPortfolioResponse(
            branch_id=str(portfolio.branch_id),
            totals=_totals_to_proto(portfolio.totals),
            officers=[
                pb.OfficerPortfolio(officer_id=str(officer_id), totals=_totals_to_proto(totals))
                for officer_id, totals in sorted(portfolio.by_officer.items())
            ],
        )

    async def CreateLoanOfficer(
        self, request: pb.CreateLoanOfficerRequest, context: Context
    ) -> pb.CreateLoanOfficerResponse:
        officer = await self._use_cases.create_officer(request.branch_id, request.name, request.email)
        return pb.CreateLoanOfficerResponse(officer=officer_to_proto(officer))

    async def GetLoanOfficer(self, request: pb.GetLoanOfficerRequest, context: Context) -> pb.GetLoanOfficerResponse:
        officer = await self._use_cases.get_officer(request.officer_id)
        return pb.GetLoanOfficerResponse(officer=officer_to_proto(officer))

    async def ListLoanOfficers(
        self, request: pb.ListLoanOfficersRequest, context: Context
    ) -> pb.ListLoanOfficersResponse:
        page = await self._use_cases.list_officers(request.branch_id, request.page_size, request.page_token)
        return pb.ListLoanOfficersResponse(
            officers=[officer_to_proto(o) for o in page.items], next_page_token=page.next_page_token
        )

    async def CreateCustomer(self, request: pb.CreateCustomerRequest, context: Context) -> pb.CreateCustomerResponse:
        new = NewCustomer(
            branch_id=request.branch_id,
            name=request.name,
            email=request.email,
            phone=request.phone,
            date_of_birth=_date_from_proto(request.date_of_birth) if request.HasField("date_of_birth") else None,
            national_id=request.national_id,
        )
        return pb.CreateCustomerResponse(customer=customer_to_proto(await self._use_cases.create_customer(new)))

    async def GetCustomer(self, request: pb.GetCustomerRequest, context: Context) -> pb.GetCustomerResponse:
        customer = await self._use_cases.get_customer(request.customer_id)
        return pb.GetCustomerResponse(customer=customer_to_proto(customer))

    async def ListCustomers(self, request: pb.ListCustomersRequest, context: Context) -> pb.ListCustomersResponse:
        page = await self._use_cases.list_customers(request.branch_id, request.page_size, request.page_token)
        return pb.ListCustomersResponse(
            customers=[customer_to_proto(c) for c in page.items], next_page_token=page.next_page_token
        )

    async def UpdateCustomer(self, request: pb.UpdateCustomerRequest, context: Context) -> pb.UpdateCustomerResponse:
        changes = CustomerChanges(
            customer_id=request.customer_id,
            version=request.version,
            name=request.name if request.HasField("name") else None,
            email=request.email if request.HasField("email") else None,
            phone=request.phone if request.HasField("phone") else None,
        )
        return pb.UpdateCustomerResponse(customer=customer_to_proto(await self._use_cases.update_customer(changes)))

    async def SubmitLoanApplication(
        self, request: pb.SubmitLoanApplicationRequest, context: Context
    ) -> pb.SubmitLoanApplicationResponse:
        new = NewApplication(
            customer_id=request.customer_id,
            officer_id=request.officer_id,
            principal=MoneyInput.from_proto(request.principal) if request.HasField("principal") else None,
            term_months=request.term_months,
            annual_rate_bps=request.annual_rate_bps,
            purpose=request.purpose,
        )
        application = await self._use_cases.submit_application(new)
        return pb.SubmitLoanApplicationResponse(application=application_to_proto(application))

    async def GetLoanApplication(
        self, request: pb.GetLoanApplicationRequest, context: Context
    ) -> pb.GetLoanApplicationResponse:
        application = await self._use_cases.get_application(request.application_id)
        return pb.GetLoanApplicationResponse(application=application_to_proto(application))

    async def ListLoanApplications(
        self, request: pb.ListLoanApplicationsRequest, context: Context
    ) -> pb.ListLoanApplicationsResponse:
        query = ApplicationQuery(
            customer_id=request.customer_id,
            officer_id=request.officer_id,
            branch_id=request.branch_id,
            status=_status_from_proto(request.status, "status"),
        )
        page = await self._use_cases.list_applications(query, request.page_size, request.page_token)
        return pb.ListLoanApplicationsResponse(
            applications=[application_to_proto(a) for a in page.items], next_page_token=page.next_page_token
        )

    async def TransitionLoanApplication(
        self, request: pb.TransitionLoanApplicationRequest, context: Context
    ) -> pb.TransitionLoanApplicationResponse:
        application = await self._use_cases.transition_application(
            request.application_id, _action_from_proto(request.action), request.version, request.reason
        )
        return pb.TransitionLoanApplicationResponse(application=application_to_proto(application))

    async def CheckLoanStanding(
        self, request: pb.CheckLoanStandingRequest, context: Context
    ) -> pb.CheckLoanStandingResponse:
        standing = await self._use_cases.loan_standing(request.loan_id, request.customer_id)
        return pb.CheckLoanStandingResponse(
            exists=standing.exists,
            belongs_to_customer=standing.belongs_to_customer,
            status=status_to_proto(standing.status) if standing.status else pb.APPLICATION_STATUS_UNSPECIFIED,
            principal=standing.principal.to_proto() if standing.principal else None,
        )
