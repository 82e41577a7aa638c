"""The payment storage port, implemented alike by the DynamoDB, PostgreSQL and in-memory adapters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from chassis.errors import AlreadyExists
from services.payment.domain import Payment, PaymentCursor


class IdempotencyKeyTaken(AlreadyExists):
    """`create` found the key already used; `existing` is the payment it belongs to."""

    def __init__(self, existing: Payment) -> None:
        super().__init__("payment", "idempotency_key")
        self.existing = existing


class PaymentRepository(Protocol):
    """Every listing is newest first by (paid_at, id); every method is one Query/GetItem or indexed SELECT."""

    backend: str  # "postgres" | "dynamodb" | "memory", for traces and reports

    async def create(self, payment: Payment) -> Payment:
        """Store a new payment (version 1). Raises IdempotencyKeyTaken if its key is already used."""
        ...

    async def get(self, payment_id: uuid.UUID, *, for_write: bool = False) -> Payment | None:
        """`for_write`: the lookup is a write's own (the version a change starts from), so a hybrid store answers it
        from the store authoritative for writes in its stage, never from one an outage or lag could mislead; a
        single store is that store."""
        ...

    async def get_by_idempotency_key(self, key: str, *, for_write: bool = False) -> Payment | None:
        """`for_write` as for `get`: the idempotency check before recording a payment."""
        ...

    async def list_for_customer(
        self,
        customer_id: uuid.UUID,
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        """paid_from inclusive, paid_to exclusive; `after` is the last item of the previous page."""
        ...

    async def list_for_loan(self, loan_id: uuid.UUID, after: PaymentCursor | None, limit: int) -> list[Payment]: ...

    async def update(self, payment: Payment, expected_version: int) -> bool:
        """Replace the payment if the stored one is at `expected_version`; False otherwise (or absent)."""
        ...

    async def put_if_newer(self, payment: Payment) -> bool:
        """Replication write (relay, backfill): store it unless a version >= payment.version is stored.

        Idempotent; never lets an older version overwrite a newer one. True when it wrote.
        """
        ...
