"""Customer-context entities, the loan application workflow and input rules; no gRPC, no SQL."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from chassis.errors import FailedPrecondition, FieldViolation, InvalidArgument
from chassis.money import Money


class ApplicationStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    UNDER_REVIEW = "UNDER_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    WITHDRAWN = "WITHDRAWN"
    FUNDED = "FUNDED"
    CLOSED = "CLOSED"


class ApplicationAction(StrEnum):
    REVIEW = "REVIEW"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    WITHDRAW = "WITHDRAW"
    FUND = "FUND"
    CLOSE = "CLOSE"


# The workflow: (current status, action) -> next status. Everything else is refused.
TRANSITIONS: dict[tuple[ApplicationStatus, ApplicationAction], ApplicationStatus] = {
    (ApplicationStatus.SUBMITTED, ApplicationAction.REVIEW): ApplicationStatus.UNDER_REVIEW,
    (ApplicationStatus.UNDER_REVIEW, ApplicationAction.APPROVE): ApplicationStatus.APPROVED,
    (ApplicationStatus.UNDER_REVIEW, ApplicationAction.REJECT): ApplicationStatus.REJECTED,
    (ApplicationStatus.SUBMITTED, ApplicationAction.WITHDRAW): ApplicationStatus.WITHDRAWN,
    (ApplicationStatus.UNDER_REVIEW, ApplicationAction.WITHDRAW): ApplicationStatus.WITHDRAWN,
    (ApplicationStatus.APPROVED, ApplicationAction.FUND): ApplicationStatus.FUNDED,
    (ApplicationStatus.FUNDED, ApplicationAction.CLOSE): ApplicationStatus.CLOSED,
}


def next_status(current: ApplicationStatus, action: ApplicationAction) -> ApplicationStatus:
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        allowed = sorted(a.value.lower() for (status, a) in TRANSITIONS if status == current)
        hint = f"allowed: {', '.join(allowed)}" if allowed else "it is final"
        raise FailedPrecondition(
            f"cannot {action.value.lower()} an application that is {current.value} ({hint})"
        ) from None


@dataclass(frozen=True)
class Branch:
    id: uuid.UUID
    code: str
    name: str
    address: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class LoanOfficer:
    id: uuid.UUID
    branch_id: uuid.UUID
    name: str
    email: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Customer:
    id: uuid.UUID
    branch_id: uuid.UUID
    name: str
    email: str
    phone: str
    date_of_birth: date
    national_id: str
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class LoanApplication:
    id: uuid.UUID
    customer_id: uuid.UUID
    branch_id: uuid.UUID
    officer_id: uuid.UUID
    principal: Money
    term_months: int
    annual_rate_bps: int
    purpose: str
    status: ApplicationStatus = ApplicationStatus.SUBMITTED
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StatusTotal:
    status: ApplicationStatus
    count: int
    principal: Money


@dataclass(frozen=True)
class BranchPortfolio:
    branch_id: uuid.UUID
    totals: list[StatusTotal]
    by_officer: dict[uuid.UUID, list[StatusTotal]]


@dataclass(frozen=True)
class LoanStanding:
    exists: bool
    belongs_to_customer: bool = False
    status: ApplicationStatus | None = None
    principal: Money | None = None


@dataclass(frozen=True)
class ApplicationFilter:
    customer_id: uuid.UUID | None = None
    officer_id: uuid.UUID | None = None
    branch_id: uuid.UUID | None = None
    status: ApplicationStatus | None = None


# --- input rules -------------------------------------------------------------------------------------------

BRANCH_CODE = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,15}$")
EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
# A control character in a name is never meant, and NUL (U+0000) cannot even be stored by PostgreSQL, so it must be
# refused as bad input rather than fail as INTERNAL. Longer text (an address, a purpose) may keep line breaks/tabs.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_CHARACTER_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
PHONE_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
NATIONAL_ID = re.compile(r"^[A-Za-z0-9-]{4,32}$")
MIN_PRINCIPAL_MAJOR = 100
MAX_PRINCIPAL_MAJOR = 10_000_000
MAX_TERM_MONTHS = 480
MAX_RATE_BPS = 10_000
MIN_AGE_YEARS = 18
MAX_AGE_YEARS = 120


class Violations:
    """Collects every bad field of a request so the caller learns them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def extend(self, violations: list[FieldViolation]) -> None:
        self.items.extend(violations)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


def check_text(violations: Violations, field: str, value: str, max_length: int, *, multiline: bool = False) -> str:
    value = value.strip()
    if not value:
        violations.add(field, "is required")
    elif len(value) > max_length:
        violations.add(field, f"must be at most {max_length} characters")
    elif multiline and CONTROL_CHARACTER_BUT_LAYOUT.search(value):
        violations.add(field, "must not contain control characters other than line breaks and tabs (e.g. U+0000)")
    elif not multiline and CONTROL_CHARACTER.search(value):
        violations.add(field, "must not contain control characters (line breaks, tabs, U+0000 and the like)")
    return value


def check_email(violations: Violations, field: str, value: str) -> str:
    value = value.strip()
    if not EMAIL.match(value) or len(value) > 254:
        violations.add(field, "must be an e-mail address")
    return value


def check_phone(violations: Violations, field: str, value: str) -> str:
    value = value.strip()
    if not PHONE_E164.match(value):
        violations.add(field, "must be an E.164 phone number such as +14155550123")
    return value


def check_branch_code(violations: Violations, value: str) -> str:
    value = value.strip()
    if not BRANCH_CODE.match(value):
        violations.add("code", "must be 2-16 characters of A-Z, 0-9 and '-', starting with a letter or digit")
    return value


def check_date_of_birth(violations: Violations, value: date | None, today: date) -> None:
    if value is None:
        violations.add("date_of_birth", "is required and must be a real calendar date")
        return
    age = today.year - value.year - ((today.month, today.day) < (value.month, value.day))
    if value > today:
        violations.add("date_of_birth", "must not be in the future")
    elif age < MIN_AGE_YEARS:
        violations.add("date_of_birth", f"customer must be at least {MIN_AGE_YEARS} years old")
    elif age > MAX_AGE_YEARS:
        violations.add("date_of_birth", f"must be within the last {MAX_AGE_YEARS} years")


def check_national_id(violations: Violations, value: str) -> str:
    value = value.strip()
    if not NATIONAL_ID.match(value):
        violations.add("national_id", "must be 4-32 characters of letters, digits and '-'")
    return value


def check_loan_terms(violations: Violations, principal: Money | None, term_months: int, rate_bps: int) -> None:
    if principal is not None:
        scale = 10**principal.digits
        if not MIN_PRINCIPAL_MAJOR * scale <= principal.minor_units <= MAX_PRINCIPAL_MAJOR * scale:
            violations.add(
                "principal",
                f"must be between {MIN_PRINCIPAL_MAJOR:,} and {MAX_PRINCIPAL_MAJOR:,} {principal.currency}",
            )
    if not 1 <= term_months <= MAX_TERM_MONTHS:
        violations.add("term_months", f"must be between 1 and {MAX_TERM_MONTHS}")
    if not 0 <= rate_bps <= MAX_RATE_BPS:
        violations.add("annual_rate_bps", f"must be between 0 and {MAX_RATE_BPS} basis points")


def check_expected_version(violations: Violations, version: int) -> None:
    if version < 1:
        violations.add("version", "is required: the version you read")
