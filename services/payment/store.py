"""HybridPaymentStore: the PaymentRepository the service uses, routing each call by the live migration stage."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from migration.hybrid import Connection, HybridTable, JournalItem
from migration.stages import Backend
from services.payment.domain import PAYMENT_FIELDS, Payment, PaymentCursor
from services.payment.ports import PaymentRepository

# Read keys served from a GSI, which is eventually consistent: a copy just written may not show in them yet, so they
# stay routed to PostgreSQL while it settles (migration.journal). Gets by id and by idempotency key are consistent
# GetItems and need no settling.
INDEX_READ_KINDS = ("customer", "loan")


def routing_keys(payment: Payment) -> list[str]:
    """Every read a write to this payment can change: itself, its key, its customer's and its loan's lists."""
    return [
        f"payment:{payment.id}",
        f"idempotency:{payment.idempotency_key}",
        f"customer:{payment.customer_id}",
        f"loan:{payment.loan_id}",
    ]


def idempotency_mismatch_key(key: str) -> str:
    """How a shadow mismatch found by idempotency key is recorded and logged: a digest, never the key itself (a
    client's key may carry anything, and keys stay out of logs); an operator holding the key can compute it."""
    return f"idempotency-sha256:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def journal_item(payment: Payment) -> JournalItem:
    return JournalItem(str(payment.id), payment.version, routing_keys(payment))


def compare_payment(served: Payment | None, other: Payment | None) -> list[str]:
    if served is None or other is None:
        return [] if served is other else ["<presence>"]
    return [name for name in PAYMENT_FIELDS if getattr(served, name) != getattr(other, name)]


def compare_pages(served: list[Payment], other: list[Payment]) -> list[str]:
    if [p.id for p in served] != [p.id for p in other]:
        return ["<items>"]
    return sorted({name for a, b in zip(served, other, strict=True) for name in compare_payment(a, b)})


def newer(from_dynamo: Payment | None, from_postgres: Payment | None) -> Payment | None:
    """The newer version of one payment as two stores hold it (either may lack it)."""
    if from_dynamo is None or from_postgres is None:
        return from_dynamo or from_postgres
    return from_dynamo if from_dynamo.version > from_postgres.version else from_postgres


def merge_pages(from_dynamo: list[Payment], from_postgres: list[Payment], limit: int) -> list[Payment]:
    """Two stores' pages of one listing as one: every payment either holds, at its newer version, newest first.

    Both pages start after the same position and hold up to `limit` items, so the first `limit` of their union are
    exactly the merged listing's page."""
    by_id: dict[uuid.UUID, Payment] = {payment.id: payment for payment in from_postgres}
    for payment in from_dynamo:
        by_id[payment.id] = newer(payment, by_id.get(payment.id)) or payment
    return sorted(by_id.values(), key=lambda p: (p.paid_at, p.id), reverse=True)[:limit]


class HybridPaymentStore:
    """PostgreSQL and DynamoDB behind one PaymentRepository, as the table's stage says (see migration.hybrid)."""

    backend = "hybrid"

    def __init__(
        self,
        table: HybridTable,
        postgres: PaymentRepository,
        postgres_on: Callable[[Connection], PaymentRepository],
        dynamo: PaymentRepository,
    ) -> None:
        self._table = table
        self._postgres = postgres
        self._postgres_on = postgres_on  # the PostgreSQL adapter on a connection inside a transaction
        self._dynamo = dynamo

    async def replicate(self, key: str) -> None:
        """The relay's copy: PostgreSQL's current version of one payment into DynamoDB, never overwriting newer."""
        payment = await self._postgres.get(uuid.UUID(key))
        if payment is not None:
            await self._dynamo.put_if_newer(payment)

    async def create(self, payment: Payment) -> Payment:
        return await self._table.write(
            "create",
            postgres=lambda connection: self._postgres_on(connection).create(payment),
            journal_item=journal_item,
            copy_to_dynamo=self._dynamo.put_if_newer,
            dynamo_only=lambda: self._dynamo.create(payment),
        )

    async def update(self, payment: Payment, expected_version: int) -> bool:
        async def in_postgres(connection: Connection) -> bool:
            postgres = self._postgres_on(connection)
            if await postgres.update(payment, expected_version):
                return True
            if self._table.mode.policy.serves is not Backend.DYNAMODB:
                return False
            # On the way back from dynamo_only PostgreSQL may not hold this payment's latest version yet (the reverse
            # sync copies it). DynamoDB never holds a newer version than PostgreSQL otherwise, since every write
            # since dual_write went to PostgreSQL first: take DynamoDB's version if it is the one the caller read,
            # never replacing a newer one, and try again (the reverse sync may have copied it meanwhile: then the
            # copy changes nothing and the retry finds it).
            current = await self._dynamo.get(payment.id)
            if current is None or current.version != expected_version:
                return False
            await postgres.put_if_newer(current)
            return await postgres.update(payment, expected_version)

        return await self._table.write(
            "update",
            postgres=in_postgres,
            journal_item=lambda updated: journal_item(payment) if updated else None,
            copy_to_dynamo=lambda _: self._dynamo.put_if_newer(payment),
            dynamo_only=lambda: self._dynamo.update(payment, expected_version),
        )

    async def put_if_newer(self, payment: Payment) -> bool:
        return await self._table.write(
            "put_if_newer",
            postgres=lambda connection: self._postgres_on(connection).put_if_newer(payment),
            journal_item=lambda wrote: journal_item(payment) if wrote else None,
            copy_to_dynamo=lambda _: self._dynamo.put_if_newer(payment),
            dynamo_only=lambda: self._dynamo.put_if_newer(payment),
        )

    async def get(self, payment_id: uuid.UUID, *, for_write: bool = False) -> Payment | None:
        return await self._one(
            "get",
            postgres=lambda: self._postgres.get(payment_id),
            dynamo=lambda: self._dynamo.get(payment_id),
            routing_key=f"payment:{payment_id}",
            item_key=str(payment_id),
            for_write=for_write,
        )

    async def get_by_idempotency_key(self, key: str, *, for_write: bool = False) -> Payment | None:
        return await self._one(
            "get_by_idempotency_key",
            postgres=lambda: self._postgres.get_by_idempotency_key(key),
            dynamo=lambda: self._dynamo.get_by_idempotency_key(key),
            routing_key=f"idempotency:{key}",
            item_key=idempotency_mismatch_key(key),
            for_write=for_write,
        )

    async def _one(
        self,
        operation: str,
        *,
        postgres: Callable[[], Awaitable[Payment | None]],
        dynamo: Callable[[], Awaitable[Payment | None]],
        routing_key: str,
        item_key: str,
        for_write: bool,
    ) -> Payment | None:
        """One payment: for a reader where the stage serves it, for a write from the authoritative store."""
        if for_write:
            return await self._table.read_for_write(
                f"{operation}.for_write", postgres=postgres, dynamo=dynamo, merge=newer
            )
        return await self._table.read(
            operation,
            postgres=postgres,
            dynamo=dynamo,
            merge=newer,
            routing_keys=[routing_key],
            compare=compare_payment,
            item_key=item_key,
        )

    async def list_for_customer(
        self,
        customer_id: uuid.UUID,
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        return await self._table.read(
            "list_for_customer",
            postgres=lambda: self._postgres.list_for_customer(customer_id, paid_from, paid_to, after, limit),
            dynamo=lambda: self._dynamo.list_for_customer(customer_id, paid_from, paid_to, after, limit),
            merge=lambda from_dynamo, from_postgres: merge_pages(from_dynamo, from_postgres, limit),
            routing_keys=[f"customer:{customer_id}"],
            compare=compare_pages,
            item_key=f"customer:{customer_id}",
        )

    async def list_for_loan(self, loan_id: uuid.UUID, after: PaymentCursor | None, limit: int) -> list[Payment]:
        return await self._table.read(
            "list_for_loan",
            postgres=lambda: self._postgres.list_for_loan(loan_id, after, limit),
            dynamo=lambda: self._dynamo.list_for_loan(loan_id, after, limit),
            merge=lambda from_dynamo, from_postgres: merge_pages(from_dynamo, from_postgres, limit),
            routing_keys=[f"loan:{loan_id}"],
            compare=compare_pages,
            item_key=f"loan:{loan_id}",
        )
