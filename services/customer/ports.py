"""The customer context's storage port; adapters translate store errors into domain errors."""

from __future__ import annotations

import uuid
from typing import Protocol

from services.customer.domain import (
    ApplicationAction,
    ApplicationFilter,
    ApplicationStatus,
    Branch,
    BranchPortfolio,
    Customer,
    LoanApplication,
    LoanOfficer,
    LoanStanding,
)


class CustomerRepository(Protocol):
    async def add_branch(self, branch: Branch) -> Branch: ...
    async def get_branch(self, branch_id: uuid.UUID) -> Branch | None: ...
    async def list_branches(self, after: uuid.UUID | None, limit: int) -> list[Branch]: ...

    async def add_officer(self, officer: LoanOfficer) -> LoanOfficer: ...
    async def get_officer(self, officer_id: uuid.UUID) -> LoanOfficer | None: ...
    async def list_officers(
        self, branch_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
    ) -> list[LoanOfficer]: ...

    async def add_customer(self, customer: Customer) -> Customer: ...
    async def get_customer(self, customer_id: uuid.UUID) -> Customer | None: ...
    async def list_customers(
        self, branch_id: uuid.UUID | None, after: uuid.UUID | None, limit: int
    ) -> list[Customer]: ...
    async def update_customer(
        self, customer_id: uuid.UUID, expected_version: int, name: str | None, email: str | None, phone: str | None
    ) -> Customer | None:
        """The updated customer, or None when no row has that id at that version."""
        ...

    async def add_application(self, application: LoanApplication) -> LoanApplication: ...
    async def get_application(self, application_id: uuid.UUID) -> LoanApplication | None: ...
    async def list_applications(
        self, where: ApplicationFilter, before: uuid.UUID | None, limit: int
    ) -> list[LoanApplication]:
        """Newest first; `before` is the last id of the previous page."""
        ...

    async def set_application_status(
        self,
        application_id: uuid.UUID,
        expected_version: int,
        status: ApplicationStatus,
        action: ApplicationAction,
        reason: str,
    ) -> LoanApplication | None:
        """The moved application, or None when no row has that id at that version."""
        ...

    async def branch_portfolio(self, branch_id: uuid.UUID) -> BranchPortfolio: ...
    async def loan_standing(self, loan_id: uuid.UUID, customer_id: uuid.UUID) -> LoanStanding: ...
