"""Payments for tests: a valid payment with fresh ids, and a RecordPayment request for the demo customer."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from google.type import money_pb2

from chassis.ids import new_id
from chassis.money import Money
from loanbook.payment.v1 import payment_pb2 as pb
from services.payment.domain import Payment, PaymentMethod, PaymentStatus, request_fingerprint
from tests.support.demo import CASEY, CASEY_FUNDED_LOAN

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def a_payment(
    customer_id: uuid.UUID | None = None, loan_id: uuid.UUID | None = None, paid_at: datetime = T0, **changes: Any
) -> Payment:
    """A valid version-1 payment with fresh ids and key, so tests on shared stores never collide."""
    customer, loan = customer_id or new_id(), loan_id or new_id()
    amount = Money("USD", 10_000)
    payment = Payment(
        id=new_id(),
        customer_id=customer,
        loan_id=loan,
        amount=amount,
        method=PaymentMethod.CARD,
        status=PaymentStatus.SETTLED,
        paid_at=paid_at,
        created_at=paid_at,
        updated_at=paid_at,
        version=1,
        idempotency_key=f"key-{secrets.token_hex(8)}",
        request_fingerprint=request_fingerprint(customer, loan, amount, PaymentMethod.CARD, paid_at),
    )
    return dataclasses.replace(payment, **changes)


def record(key: str | None = None, /, **overrides: object) -> pb.RecordPaymentRequest:
    fields: dict[str, object] = {
        "idempotency_key": key or f"e2e-{secrets.token_hex(6)}",
        "customer_id": CASEY,
        "loan_id": CASEY_FUNDED_LOAN,
        "amount": money_pb2.Money(currency_code="USD", units=250, nanos=750_000_000),
        "method": pb.PAYMENT_METHOD_ACH,
    }
    fields.update(overrides)
    return pb.RecordPaymentRequest(**fields)  # type: ignore[arg-type]
