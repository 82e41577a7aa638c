"""What the customer context does: validated commands and queries over the CustomerRepository port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Generic, Protocol, TypeVar

from chassis.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, VersionConflict
from chassis.ids import new_id, parse_id
from chassis.money import MoneyInput, parse_money
from chassis.page_tokens import PageTokens, page_size_or_default
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
    Violations,
    check_branch_code,
    check_date_of_birth,
    check_email,
    check_expected_version,
    check_loan_terms,
    check_national_id,
    check_phone,
    check_text,
    next_status,
)
from services.customer.ports import CustomerRepository

T = TypeVar("T")

logger = logging.getLogger(__name__)


class HasId(Protocol):
    @property
    def id(self) -> uuid.UUID: ...


Listed = TypeVar("Listed", bound=HasId)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str


@dataclass(frozen=True)
class NewCustomer:
    branch_id: str
    name: str
    email: str
    phone: str
    date_of_birth: date | None  # None when the caller's date is missing or not a calendar date
    national_id: str


@dataclass(frozen=True)
class CustomerChanges:
    customer_id: str
    version: int
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class NewApplication:
    customer_id: str
    officer_id: str
    principal: MoneyInput | None
    term_months: int
    annual_rate_bps: int
    purpose: str


@dataclass(frozen=True)
class ApplicationQuery:
    customer_id: str = ""
    officer_id: str = ""
    branch_id: str = ""
    status: ApplicationStatus | None = None


def _required_id(value: str, field: str) -> uuid.UUID:
    parsed, violations = parse_id(value, field)
    if parsed is None:
        raise InvalidArgument(violations)
    return parsed


def _optional_id(violations: Violations, value: str, field: str) -> uuid.UUID | None:
    if not value:
        return None
    parsed, problems = parse_id(value, field)
    violations.extend(problems)
    return parsed


def _position_id(position: dict[str, object] | None) -> uuid.UUID | None:
    if position is None:
        return None
    try:
        return uuid.UUID(str(position["id"]))
    except (KeyError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "page token is not valid")]) from None


class CustomerUseCases:
    def __init__(
        self,
        repository: CustomerRepository,
        page_tokens: PageTokens,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._repository = repository
        self._tokens = page_tokens
        self._today = today

    def _page(self, items: list[T], limit: int, query: dict[str, object], last_id: Callable[[T], uuid.UUID]) -> Page[T]:
        """`items` holds up to limit + 1 rows; the extra one only tells that another page exists."""
        if len(items) <= limit:
            return Page(items, "")
        items = items[:limit]
        return Page(items, self._tokens.encode(query, {"id": str(last_id(items[-1]))}))

    # --- branches ----------------------------------------------------------------------------------------

    async def create_branch(self, code: str, name: str, address: str) -> Branch:
        violations = Violations()
        code = check_branch_code(violations, code)
        name = check_text(violations, "name", name, 200)
        address = check_text(violations, "address", address, 500, multiline=True)
        violations.raise_if_any()
        return await self._repository.add_branch(Branch(new_id(), code, name, address))

    async def get_branch(self, branch_id: str) -> Branch:
        branch = await self._repository.get_branch(_required_id(branch_id, "branch_id"))
        if branch is None:
            raise NotFound("branch", branch_id)
        return branch

    async def list_branches(self, page_size: int, page_token: str) -> Page[Branch]:
        limit = page_size_or_default(page_size)
        query: dict[str, object] = {"list": "branches"}
        after = _position_id(self._tokens.decode(page_token, query))
        rows = await self._repository.list_branches(after, limit + 1)
        return self._page(rows, limit, query, lambda branch: branch.id)

    async def branch_portfolio(self, branch_id: str) -> BranchPortfolio:
        branch = await self.get_branch(branch_id)
        return await self._repository.branch_portfolio(branch.id)

    # --- loan officers -----------------------------------------------------------------------------------

    async def create_officer(self, branch_id: str, name: str, email: str) -> LoanOfficer:
        violations = Violations()
        branch_uuid = _optional_id(violations, branch_id, "branch_id")
        if not branch_id:
            violations.add("branch_id", "is required")
        name = check_text(violations, "name", name, 200)
        email = check_email(violations, "email", email)
        violations.raise_if_any()
        assert branch_uuid is not None
        if await self._repository.get_branch(branch_uuid) is None:
            raise NotFound("branch", branch_id)
        return await self._repository.add_officer(LoanOfficer(new_id(), branch_uuid, name, email))

    async def get_officer(self, officer_id: str) -> LoanOfficer:
        officer = await self._repository.get_officer(_required_id(officer_id, "officer_id"))
        if officer is None:
            raise NotFound("loan officer", officer_id)
        return officer

    async def list_officers(self, branch_id: str, page_size: int, page_token: str) -> Page[LoanOfficer]:
        fetch = self._repository.list_officers
        return await self._list_by_branch("officers", branch_id, page_size, page_token, fetch)

    # --- customers ---------------------------------------------------------------------------------------

    async def create_customer(self, new: NewCustomer) -> Customer:
        violations = Violations()
        branch_uuid = _optional_id(violations, new.branch_id, "branch_id")
        if not new.branch_id:
            violations.add("branch_id", "is required")
        name = check_text(violations, "name", new.name, 200)
        email = check_email(violations, "email", new.email)
        phone = check_phone(violations, "phone", new.phone)
        check_date_of_birth(violations, new.date_of_birth, self._today())
        national_id = check_national_id(violations, new.national_id)
        violations.raise_if_any()
        assert branch_uuid is not None and new.date_of_birth is not None
        if await self._repository.get_branch(branch_uuid) is None:
            raise NotFound("branch", new.branch_id)
        customer = Customer(new_id(), branch_uuid, name, email, phone, new.date_of_birth, national_id)
        return await self._repository.add_customer(customer)

    async def get_customer(self, customer_id: str) -> Customer:
        customer = await self._repository.get_customer(_required_id(customer_id, "customer_id"))
        if customer is None:
            raise NotFound("customer", customer_id)
        return customer

    async def list_customers(self, branch_id: str, page_size: int, page_token: str) -> Page[Customer]:
        return await self._list_by_branch(
            "customers", branch_id, page_size, page_token, self._repository.list_customers
        )

    async def _list_by_branch(
        self,
        kind: str,
        branch_id: str,
        page_size: int,
        page_token: str,
        fetch: Callable[[uuid.UUID | None, uuid.UUID | None, int], Awaitable[list[Listed]]],
    ) -> Page[Listed]:
        """One page of records in creation order, optionally of one branch."""
        violations = Violations()
        branch_uuid = _optional_id(violations, branch_id, "branch_id")
        violations.raise_if_any()
        limit = page_size_or_default(page_size)
        query: dict[str, object] = {"list": kind, "branch_id": branch_id}
        after = _position_id(self._tokens.decode(page_token, query))
        return self._page(await fetch(branch_uuid, after, limit + 1), limit, query, lambda record: record.id)

    async def update_customer(self, changes: CustomerChanges) -> Customer:
        violations = Violations()
        customer_uuid = _optional_id(violations, changes.customer_id, "customer_id")
        if not changes.customer_id:
            violations.add("customer_id", "is required")
        check_expected_version(violations, changes.version)
        name = check_text(violations, "name", changes.name, 200) if changes.name is not None else None
        email = check_email(violations, "email", changes.email) if changes.email is not None else None
        phone = check_phone(violations, "phone", changes.phone) if changes.phone is not None else None
        if name is None and email is None and phone is None:
            violations.add("name", "at least one of name, email or phone must be given")
        violations.raise_if_any()
        assert customer_uuid is not None
        updated = await self._repository.update_customer(customer_uuid, changes.version, name, email, phone)
        if updated is not None:
            return updated
        current = await self.get_customer(changes.customer_id)
        raise VersionConflict("customer", changes.customer_id, changes.version, current.version)

    # --- loan applications -------------------------------------------------------------------------------

    async def submit_application(self, new: NewApplication) -> LoanApplication:
        violations = Violations()
        customer_uuid = _optional_id(violations, new.customer_id, "customer_id")
        officer_uuid = _optional_id(violations, new.officer_id, "officer_id")
        for field, value in (("customer_id", new.customer_id), ("officer_id", new.officer_id)):
            if not value:
                violations.add(field, "is required")
        principal = None
        if new.principal is None:
            violations.add("principal", "is required")
        else:
            principal, problems = parse_money(new.principal, "principal")
            violations.extend(problems)
        check_loan_terms(violations, principal, new.term_months, new.annual_rate_bps)
        purpose = check_text(violations, "purpose", new.purpose, 500, multiline=True)
        violations.raise_if_any()
        assert customer_uuid is not None and officer_uuid is not None and principal is not None

        customer = await self._repository.get_customer(customer_uuid)
        if customer is None:
            raise NotFound("customer", new.customer_id)
        officer = await self._repository.get_officer(officer_uuid)
        if officer is None:
            raise NotFound("loan officer", new.officer_id)
        if officer.branch_id != customer.branch_id:
            raise FailedPrecondition("the loan officer works at a different branch than the customer's")
        application = LoanApplication(
            id=new_id(),
            customer_id=customer.id,
            branch_id=customer.branch_id,
            officer_id=officer.id,
            principal=principal,
            term_months=new.term_months,
            annual_rate_bps=new.annual_rate_bps,
            purpose=purpose,
        )
        return await self._repository.add_application(application)

    async def get_application(self, application_id: str) -> LoanApplication:
        application = await self._repository.get_application(_required_id(application_id, "application_id"))
        if application is None:
            raise NotFound("loan application", application_id)
        return application

    async def list_applications(
        self, query: ApplicationQuery, page_size: int, page_token: str
    ) -> Page[LoanApplication]:
        violations = Violations()
        where = ApplicationFilter(
            customer_id=_optional_id(violations, query.customer_id, "customer_id"),
            officer_id=_optional_id(violations, query.officer_id, "officer_id"),
            branch_id=_optional_id(violations, query.branch_id, "branch_id"),
            status=query.status,
        )
        violations.raise_if_any()
        limit = page_size_or_default(page_size)
        fingerprint: dict[str, object] = {
            "list": "applications",
            "customer_id": query.customer_id,
            "officer_id": query.officer_id,
            "branch_id": query.branch_id,
            "status": query.status.value if query.status else "",
        }
        before = _position_id(self._tokens.decode(page_token, fingerprint))
        rows = await self._repository.list_applications(where, before, limit + 1)
        return self._page(rows, limit, fingerprint, lambda application: application.id)

    async def transition_application(
        self, application_id: str, action: ApplicationAction | None, version: int, reason: str
    ) -> LoanApplication:
        violations = Violations()
        application_uuid = _optional_id(violations, application_id, "application_id")
        if not application_id:
            violations.add("application_id", "is required")
        if action is None:
            violations.add("action", "is required: one of review, approve, reject, withdraw, fund, close")
        check_expected_version(violations, version)
        reason = reason.strip()
        if len(reason) > 500:
            violations.add("reason", "must be at most 500 characters")
        elif "\x00" in reason:  # free text, line breaks welcome; PostgreSQL cannot store U+0000
            violations.add("reason", "must not contain NUL characters (U+0000)")
        violations.raise_if_any()
        assert application_uuid is not None and action is not None

        current = await self.get_application(application_id)
        if current.version != version:
            raise VersionConflict("loan application", application_id, version, current.version)
        target = next_status(current.status, action)
        moved = await self._repository.set_application_status(application_uuid, version, target, action, reason)
        if moved is not None:
            logger.info(
                "loan application moved",
                extra={
                    "application_id": application_id,
                    "action": action.value,
                    "from_status": current.status.value,
                    "to_status": target.value,
                },
            )
            return moved
        latest = await self.get_application(application_id)  # someone else moved it in between
        raise VersionConflict("loan application", application_id, version, latest.version)

    async def loan_standing(self, loan_id: str, customer_id: str) -> LoanStanding:
        violations = Violations()
        loan_uuid = _optional_id(violations, loan_id, "loan_id")
        customer_uuid = _optional_id(violations, customer_id, "customer_id")
        for field, value in (("loan_id", loan_id), ("customer_id", customer_id)):
            if not value:
                violations.add(field, "is required")
        violations.raise_if_any()
        assert loan_uuid is not None and customer_uuid is not None
        standing = await self._repository.loan_standing(loan_uuid, customer_uuid)
        # The customer service's line in a payment's trace. Ids and the outcome only: no principal, no names.
        logger.info(
            "loan standing checked",
            extra={
                "loan_id": loan_id,
                "customer_id": customer_id,
                "exists": standing.exists,
                "belongs_to_customer": standing.belongs_to_customer,
                "status": standing.status.value if standing.status else "",
            },
        )
        return standing
