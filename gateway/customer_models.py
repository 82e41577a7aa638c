"""Pydantic mirrors of the customer context's protobuf JSON (lowerCamelCase), for validation and OpenAPI.

Hand-written rather than generated from the descriptors: FastAPI then validates the HTTP shape (types, enum names,
unknown fields) with its usual 400 path, `/docs` reads like the REST API it is, and the few REST-only choices
(the id in the path, `version` required) are visible. tests/unit/test_customer_models.py checks every model
against its protobuf message, field by field, so the mirror cannot drift from the protos unnoticed.

Request bodies carry the HTTP shape only; which fields a request needs is the service's rule, and its
google.rpc.BadRequest violations come back in the same error body, with these JSON field names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

INT32_MAX = 2**31 - 1
Int64String = Annotated[
    str, StringConstraints(pattern=r"^-?[0-9]{1,19}$"), Field(description="int64, as protobuf JSON writes it")
]
INT64_MAX = 2**63 - 1
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
# A version the client read; bounded so that a larger number is a 400 here, not a failed int64 conversion later.
Version = Annotated[int, Field(ge=0, le=INT64_MAX)]
Reason = Annotated[str, StringConstraints(max_length=2000)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class ProtoJson(BaseModel):
    """A protobuf message in canonical JSON: lowerCamelCase names, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid", frozen=True)

    def to_proto_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class ApplicationStatus(StrEnum):
    UNSPECIFIED = "APPLICATION_STATUS_UNSPECIFIED"
    SUBMITTED = "APPLICATION_STATUS_SUBMITTED"
    UNDER_REVIEW = "APPLICATION_STATUS_UNDER_REVIEW"
    APPROVED = "APPLICATION_STATUS_APPROVED"
    REJECTED = "APPLICATION_STATUS_REJECTED"
    WITHDRAWN = "APPLICATION_STATUS_WITHDRAWN"
    FUNDED = "APPLICATION_STATUS_FUNDED"
    CLOSED = "APPLICATION_STATUS_CLOSED"


class ApplicationAction(StrEnum):
    """The REST action segment; each is one ApplicationAction of TransitionLoanApplication."""

    REVIEW = "review"
    APPROVE = "approve"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    FUND = "fund"
    CLOSE = "close"

    @property
    def proto_name(self) -> str:
        return f"APPLICATION_ACTION_{self.name}"


# google.type


class Money(ProtoJson):
    """google.type.Money: an amount in a currency, exact (units plus nano units)."""

    currency_code: str = Field(default="", description="ISO 4217, e.g. EUR")
    # Lax int: a JSON number or, as protobuf JSON writes int64, a decimal string.
    units: Annotated[int, Field(ge=-(2**63), le=INT64_MAX)] = 0
    nanos: Annotated[int, Field(ge=-999_999_999, le=999_999_999)] = 0


class MoneyOut(ProtoJson):
    currency_code: str = ""
    units: Int64String = "0"
    nanos: int = 0


class Date(ProtoJson):
    """google.type.Date: a calendar date."""

    year: Annotated[int, Field(ge=0, le=9999)] = 0
    month: Annotated[int, Field(ge=0, le=12)] = 0
    day: Annotated[int, Field(ge=0, le=31)] = 0


# Resources (responses)

# Each model spells out its message's fields in the message's order, also where messages share fields (a resource
# and its create request, `nextPageToken` on every list): a shared base class would move its fields first in the
# OpenAPI document and tie together messages the protos keep apart. The unit test pins each model to its message.


class Branch(ProtoJson):
    id: str = ""
    code: str = ""
    name: str = ""
    address: str = ""
    create_time: datetime | None = None


class LoanOfficer(ProtoJson):
    id: str = ""
    branch_id: str = ""
    name: str = ""
    email: str = ""
    create_time: datetime | None = None


class Customer(ProtoJson):
    id: str = ""
    branch_id: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    date_of_birth: Date | None = None
    national_id: str = ""
    version: Int64String = "0"
    create_time: datetime | None = None
    update_time: datetime | None = None


class LoanApplication(ProtoJson):
    id: str = ""
    customer_id: str = ""
    branch_id: str = ""
    officer_id: str = ""
    principal: MoneyOut | None = None
    term_months: int = 0
    annual_rate_bps: int = Field(default=0, description="annual interest rate in basis points (1250 = 12.50 %)")
    purpose: str = ""
    status: ApplicationStatus = ApplicationStatus.UNSPECIFIED
    version: Int64String = "0"
    create_time: datetime | None = None
    update_time: datetime | None = None


class ListBranchesResponse(ProtoJson):
    branches: list[Branch] = []
    next_page_token: str = ""


class ListLoanOfficersResponse(ProtoJson):
    officers: list[LoanOfficer] = []
    next_page_token: str = ""


class ListCustomersResponse(ProtoJson):
    customers: list[Customer] = []
    next_page_token: str = ""


class ListLoanApplicationsResponse(ProtoJson):
    applications: list[LoanApplication] = []
    next_page_token: str = ""


class StatusTotals(ProtoJson):
    status: ApplicationStatus = ApplicationStatus.UNSPECIFIED
    count: Int64String = "0"
    principal: MoneyOut | None = None


class OfficerPortfolio(ProtoJson):
    officer_id: str = ""
    totals: list[StatusTotals] = []


class GetBranchPortfolioResponse(ProtoJson):
    branch_id: str = ""
    totals: list[StatusTotals] = []
    officers: list[OfficerPortfolio] = []


# Request bodies


class CreateBranchBody(ProtoJson):
    code: str = ""
    name: str = ""
    address: str = ""


class CreateLoanOfficerBody(ProtoJson):
    branch_id: str = ""
    name: str = ""
    email: str = ""


class CreateCustomerBody(ProtoJson):
    branch_id: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    date_of_birth: Date | None = None
    national_id: str = ""


class UpdateCustomerBody(ProtoJson):
    """Fields left out stay as they are; `version` is the one the caller read (a stale one is refused)."""

    version: Version
    name: str | None = None
    email: str | None = None
    phone: str | None = None


class SubmitLoanApplicationBody(ProtoJson):
    """`customerId` may be left out by a customer, who always applies for itself."""

    customer_id: str = ""
    officer_id: str = ""
    principal: Money | None = None
    term_months: Int32 = 0
    annual_rate_bps: Int32 = Field(default=0, description="annual interest rate in basis points (1250 = 12.50 %)")
    purpose: str = ""


class VersionedChangeBody(ProtoJson):
    """A change to a resource at the `version` the caller read, with an optional reason (the body of a transition or a
    reversal). Subclasses repeat the docstring: it is their description in the OpenAPI document."""

    version: Version
    reason: Reason = ""


class TransitionBody(VersionedChangeBody):
    """`version` is the one the caller read (a stale one is refused with 409 ABORTED)."""


# The error body every failure uses.


class ErrorStatus(BaseModel):
    code: str = Field(
        description="the gRPC status code name, e.g. INVALID_ARGUMENT; for the gateway's own refusals about HTTP, "
        "METHOD_NOT_ALLOWED (405), PAYLOAD_TOO_LARGE (413) or UNSUPPORTED_MEDIA_TYPE (415)",
        examples=["NOT_FOUND"],
    )
    message: str
    details: list[dict[str, Any]] = Field(
        description="for bad input: one {field, description} per problem, field in this API's JSON names"
    )


class ErrorBody(BaseModel):
    error: ErrorStatus
