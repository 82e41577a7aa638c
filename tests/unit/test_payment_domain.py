"""Payment entities: a payment rebuilt from stored values is the same frozen payment its constructor makes."""

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from services.payment.domain import PAYMENT_FIELDS, Payment, PaymentStatus
from tests.support import payments

PAID = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def a_payment() -> Payment:
    """A stored-looking payment at version 3, so a reversal has a version to move on from."""
    return payments.a_payment(paid_at=PAID, version=3)


def stored_values(payment: Payment) -> Any:
    return tuple(getattr(payment, name) for name in PAYMENT_FIELDS)


def test_a_payment_from_stored_values_equals_the_constructed_one_field_for_field() -> None:
    built = a_payment()

    restored = Payment.from_stored(stored_values(built))

    assert type(restored) is Payment
    assert restored == built
    assert hash(restored) == hash(built)
    assert dataclasses.asdict(restored) == dataclasses.asdict(built)


def test_a_restored_payment_is_frozen_and_changes_only_through_its_rules() -> None:
    restored = Payment.from_stored(stored_values(a_payment()))

    with pytest.raises(dataclasses.FrozenInstanceError):
        restored.version = 4  # type: ignore[misc]
    reversed_payment = restored.reversed_at(PAID)
    assert (reversed_payment.status, reversed_payment.version) == (PaymentStatus.REVERSED, 4)
    assert restored.status is PaymentStatus.SETTLED


def test_stored_values_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="zip"):
        Payment.from_stored(stored_values(a_payment())[:-1])
