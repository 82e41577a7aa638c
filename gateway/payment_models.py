"""Pydantic mirrors of the payment context's protobuf JSON (lowerCamelCase), for validation and OpenAPI.

The same approach as gateway/customer_models.py (whose base class, money and error models these reuse);
tests/unit/test_customer_models.py checks these mirrors against loanbook.payment.v1 field by field too.
REST-only choices: the idempotency key travels in the `Idempotency-Key` header rather than the body, the payment
id in the path, and a reversal's `version` is required.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, Field

from gateway.customer_models import Int64String, Money, MoneyOut, ProtoJson, VersionedChangeBody


class PaymentMethod(StrEnum):
    UNSPECIFIED = "PAYMENT_METHOD_UNSPECIFIED"
    ACH = "PAYMENT_METHOD_ACH"
    CARD = "PAYMENT_METHOD_CARD"
    WIRE = "PAYMENT_METHOD_WIRE"
    CASH = "PAYMENT_METHOD_CASH"


class PaymentStatus(StrEnum):
    UNSPECIFIED = "PAYMENT_STATUS_UNSPECIFIED"
    PENDING = "PAYMENT_STATUS_PENDING"
    SETTLED = "PAYMENT_STATUS_SETTLED"
    FAILED = "PAYMENT_STATUS_FAILED"
    REVERSED = "PAYMENT_STATUS_REVERSED"


# Resources (responses)


class Payment(ProtoJson):
    id: str = ""
    customer_id: str = ""
    loan_id: str = ""
    amount: MoneyOut | None = None
    method: PaymentMethod = PaymentMethod.UNSPECIFIED
    status: PaymentStatus = PaymentStatus.UNSPECIFIED
    paid_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    version: Int64String = "0"
    idempotency_key: str = ""


class RecordPaymentResponse(ProtoJson):
    payment: Payment | None = None
    replayed: bool = Field(
        default=False,
        description="true when the Idempotency-Key had been seen: `payment` is the original one (HTTP 200, not 201)",
    )


class ListCustomerPaymentsResponse(ProtoJson):
    payments: list[Payment] = []
    next_page_token: str = ""


class ListLoanPaymentsResponse(ProtoJson):
    payments: list[Payment] = []
    next_page_token: str = ""


# Request bodies


class RecordPaymentBody(ProtoJson):
    """RecordPaymentRequest without `idempotencyKey` (the `Idempotency-Key` header); a customer may leave out
    `customerId`, it always pays for itself. `paidTime` left out means now."""

    customer_id: str = ""
    loan_id: str = ""
    amount: Money | None = None
    method: PaymentMethod = PaymentMethod.UNSPECIFIED
    paid_time: AwareDatetime | None = Field(default=None, description="RFC 3339 with a time zone; omitted: now")


class ReversePaymentBody(VersionedChangeBody):
    """`version` is the one the caller read (a stale one is refused with 409 ABORTED)."""
