"""Customers, officers, branches and applications for tests, created through the customer service."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from google.type import date_pb2, money_pb2

from loanbook.customer.v1 import customer_pb2 as pb
from loanbook.customer.v1 import customer_pb2_grpc


def usd(units: int, nanos: int = 0) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", units=units, nanos=nanos)


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@dataclass
class Factory:
    """Makes valid records with unique codes and e-mails, so tests never collide."""

    stub: customer_pb2_grpc.CustomerServiceAsyncStub  # only in the .pyi: annotations stay strings here

    async def branch(self) -> pb.Branch:
        response = await self.stub.CreateBranch(
            pb.CreateBranchRequest(code=unique("B-").upper(), name="Test branch", address="1 Test Street")
        )
        return response.branch

    async def officer(self, branch_id: str) -> pb.LoanOfficer:
        response = await self.stub.CreateLoanOfficer(
            pb.CreateLoanOfficerRequest(branch_id=branch_id, name="Olive Officer", email=f"{unique('o')}@test.example")
        )
        return response.officer

    def customer_request(self, branch_id: str, /, **overrides: object) -> pb.CreateCustomerRequest:
        fields: dict[str, object] = {
            "branch_id": branch_id,
            "name": "Casey Customer",
            "email": f"{unique('c')}@test.example",
            "phone": "+12125550199",
            "date_of_birth": date_pb2.Date(year=1980, month=2, day=29),
            "national_id": "ID-12345",
        }
        fields.update(overrides)
        return pb.CreateCustomerRequest(**fields)  # type: ignore[arg-type]

    async def customer(self, branch_id: str) -> pb.Customer:
        return (await self.stub.CreateCustomer(self.customer_request(branch_id))).customer

    def application_request(
        self, customer_id: str, officer_id: str, /, **overrides: object
    ) -> pb.SubmitLoanApplicationRequest:
        fields: dict[str, object] = {
            "customer_id": customer_id,
            "officer_id": officer_id,
            "principal": usd(10_000, 500_000_000),
            "term_months": 36,
            "annual_rate_bps": 725,
            "purpose": "working capital",
        }
        fields.update(overrides)
        return pb.SubmitLoanApplicationRequest(**fields)  # type: ignore[arg-type]

    async def application(self, customer_id: str, officer_id: str) -> pb.LoanApplication:
        response = await self.stub.SubmitLoanApplication(self.application_request(customer_id, officer_id))
        return response.application

    async def move(
        self, application: pb.LoanApplication, *actions: pb.ApplicationAction.ValueType
    ) -> pb.LoanApplication:
        for action in actions:
            response = await self.stub.TransitionLoanApplication(
                pb.TransitionLoanApplicationRequest(
                    application_id=application.id,
                    action=action,
                    version=application.version,
                )
            )
            application = response.application
        return application

    async def world(self) -> tuple[pb.Branch, pb.LoanOfficer, pb.Customer]:
        """A branch with one officer and one customer."""
        branch = await self.branch()
        return branch, await self.officer(branch.id), await self.customer(branch.id)
