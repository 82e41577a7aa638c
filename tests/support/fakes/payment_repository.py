"""InMemoryPaymentRepository: a PaymentRepository that keeps state in dicts and behaves like the real stores."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from chassis.errors import AlreadyExists
from services.payment.domain import Payment, PaymentCursor
from services.payment.ports import IdempotencyKeyTaken


def _in_utc(payment: Payment) -> Payment:
    """The real stores hand back UTC timestamps whatever offset went in; so does the fake."""
    return replace(
        payment,
        paid_at=payment.paid_at.astimezone(UTC),
        created_at=payment.created_at.astimezone(UTC),
        updated_at=payment.updated_at.astimezone(UTC),
    )


def _position(payment: Payment) -> tuple[datetime, uuid.UUID]:
    return payment.paid_at, payment.id


class InMemoryPaymentRepository:
    """No await between a check and its write, so every method is atomic on one event loop, like a transaction."""

    backend = "memory"

    def __init__(self) -> None:
        self.payments: dict[uuid.UUID, Payment] = {}
        self._by_key: dict[str, uuid.UUID] = {}

    async def create(self, payment: Payment) -> Payment:
        if payment.idempotency_key in self._by_key:
            raise IdempotencyKeyTaken(self.payments[self._by_key[payment.idempotency_key]])
        if payment.id in self.payments:
            raise AlreadyExists("payment", "id")
        self._store(payment)
        return self.payments[payment.id]

    async def get(self, payment_id: uuid.UUID, *, for_write: bool = False) -> Payment | None:
        return self.payments.get(payment_id)

    async def get_by_idempotency_key(self, key: str, *, for_write: bool = False) -> Payment | None:
        payment_id = self._by_key.get(key)
        return None if payment_id is None else self.payments[payment_id]

    async def list_for_customer(
        self,
        customer_id: uuid.UUID,
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        return self._list(
            [p for p in self.payments.values() if p.customer_id == customer_id], paid_from, paid_to, after, limit
        )

    async def list_for_loan(self, loan_id: uuid.UUID, after: PaymentCursor | None, limit: int) -> list[Payment]:
        return self._list([p for p in self.payments.values() if p.loan_id == loan_id], None, None, after, limit)

    def _list(
        self,
        payments: list[Payment],
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        selected = [
            p
            for p in payments
            if (paid_from is None or p.paid_at >= paid_from)
            and (paid_to is None or p.paid_at < paid_to)
            and (after is None or _position(p) < (after.paid_at, after.payment_id))
        ]
        selected.sort(key=_position, reverse=True)
        return selected[: max(limit, 0)]

    async def update(self, payment: Payment, expected_version: int) -> bool:
        stored = self.payments.get(payment.id)
        if stored is None or stored.version != expected_version or stored.idempotency_key != payment.idempotency_key:
            return False
        self._store(payment)
        return True

    async def put_if_newer(self, payment: Payment) -> bool:
        stored = self.payments.get(payment.id)
        if stored is not None and stored.version >= payment.version:
            return False
        holder = self._by_key.get(payment.idempotency_key)
        if holder is not None and holder != payment.id:
            raise IdempotencyKeyTaken(self.payments[holder])
        self._store(payment)
        return True

    def _store(self, payment: Payment) -> None:
        stored = self.payments.get(payment.id)
        if stored is not None and stored.idempotency_key != payment.idempotency_key:
            del self._by_key[stored.idempotency_key]
        self.payments[payment.id] = _in_utc(payment)
        self._by_key[payment.idempotency_key] = payment.id
