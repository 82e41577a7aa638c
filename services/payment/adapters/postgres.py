"""PaymentRepository on PostgreSQL with asyncpg: the "before" store of the move to DynamoDB."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg

from chassis.money import Money
from chassis.sql import BoundPredicates
from chassis.store_errors import postgres_errors_translated
from services.payment.domain import METHOD_BY_VALUE, STATUS_BY_VALUE, Payment, PaymentCursor
from services.payment.ports import IdempotencyKeyTaken

# The idempotency key's clash is answered with the stored payment (IdempotencyKeyTaken), not by this table.
translated = postgres_errors_translated("payment", {"payments_pkey": ("payment", "id")})

COLUMNS = (
    "id, customer_id, loan_id, amount_minor, currency, method, status, paid_at, created_at, updated_at, version, "
    "idempotency_key, request_fingerprint"
)
VALUES = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13"
IDEMPOTENCY_KEY_CONSTRAINT = "payments_idempotency_key_key"


def row_values(payment: Payment) -> tuple[Any, ...]:
    return (
        payment.id,
        payment.customer_id,
        payment.loan_id,
        payment.amount.minor_units,
        payment.amount.currency,
        payment.method.value,
        payment.status.value,
        payment.paid_at,
        payment.created_at,
        payment.updated_at,
        payment.version,
        payment.idempotency_key,
        payment.request_fingerprint,
    )


def payment_from_row(row: asyncpg.Record) -> Payment:
    return Payment.from_stored(
        (
            row["id"],
            row["customer_id"],
            row["loan_id"],
            Money(row["currency"], row["amount_minor"]),
            METHOD_BY_VALUE[row["method"]],
            STATUS_BY_VALUE[row["status"]],
            row["paid_at"],
            row["created_at"],
            row["updated_at"],
            row["version"],
            row["idempotency_key"],
            row["request_fingerprint"],
        )
    )


def listing_query(
    column: Literal["customer_id", "loan_id"],
    owner: uuid.UUID,
    paid_from: datetime | None,
    paid_to: datetime | None,
    after: PaymentCursor | None,
    limit: int,
) -> tuple[str, *tuple[Any, ...]]:
    """The SELECT of one newest-first page and its arguments (public so tests can EXPLAIN it)."""
    # Only the bounds given become predicates, so every page is one range scan of the owner's index.
    where = BoundPredicates()
    where.add(f"{column} = {{}}", owner)
    if paid_from is not None:
        where.add("paid_at >= {}", paid_from)
    if paid_to is not None:
        where.add("paid_at < {}", paid_to)
    if after is not None:
        where.add("(paid_at, id) < ({}, {})", after.paid_at, after.payment_id)
    limit_placeholder = where.bind(limit)
    # Built only from the fixed column names above; every value is a bind parameter.
    query = (
        f"SELECT * FROM payment.payments WHERE {where.joined()} "  # noqa: S608
        f"ORDER BY paid_at DESC, id DESC LIMIT {limit_placeholder}"
    )
    return (query, *where.arguments)


class PostgresPaymentRepository:
    backend = "postgres"

    def __init__(self, pool: asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
        # A pool, or one connection whose open transaction the writes join (the hybrid store's journal).
        self._pool = pool

    @translated
    async def create(self, payment: Payment) -> Payment:
        # ON CONFLICT waits for a concurrent insert of the same key to commit, so the loser of a race sees the
        # winner's row below; the key is never reused, so that row cannot vanish in between.
        row = await self._pool.fetchrow(
            f"""INSERT INTO payment.payments ({COLUMNS}) VALUES ({VALUES})
                ON CONFLICT (idempotency_key) DO NOTHING RETURNING *""",  # noqa: S608 - fixed column lists
            *row_values(payment),
        )
        if row is not None:
            return payment_from_row(row)
        raise IdempotencyKeyTaken(await self._existing(payment.idempotency_key))

    @translated
    async def get(self, payment_id: uuid.UUID, *, for_write: bool = False) -> Payment | None:
        row = await self._pool.fetchrow("SELECT * FROM payment.payments WHERE id = $1", payment_id)
        return payment_from_row(row) if row else None

    @translated
    async def get_by_idempotency_key(self, key: str, *, for_write: bool = False) -> Payment | None:
        row = await self._pool.fetchrow("SELECT * FROM payment.payments WHERE idempotency_key = $1", key)
        return payment_from_row(row) if row else None

    async def _existing(self, key: str) -> Payment:
        existing = await self.get_by_idempotency_key(key)
        if existing is None:  # keys are never released, so a clash always leaves a row behind
            raise RuntimeError("idempotency key clashed but no payment holds it")
        return existing

    @translated
    async def list_for_customer(
        self,
        customer_id: uuid.UUID,
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        return await self._page(limit, listing_query("customer_id", customer_id, paid_from, paid_to, after, limit))

    @translated
    async def list_for_loan(self, loan_id: uuid.UUID, after: PaymentCursor | None, limit: int) -> list[Payment]:
        return await self._page(limit, listing_query("loan_id", loan_id, None, None, after, limit))

    async def _page(self, limit: int, query: tuple[str, *tuple[Any, ...]]) -> list[Payment]:
        """Runs one page's query from `listing_query`; a limit below one asks for nothing."""
        if limit < 1:
            return []
        rows = await self._pool.fetch(*query)
        return [payment_from_row(row) for row in rows]

    @translated
    async def update(self, payment: Payment, expected_version: int) -> bool:
        # The idempotency key is part of the match: it is fixed at create and never moves to another payment.
        status = await self._pool.execute(
            """UPDATE payment.payments
                SET customer_id = $2, loan_id = $3, amount_minor = $4, currency = $5, method = $6, status = $7,
                    paid_at = $8, created_at = $9, updated_at = $10, version = $11, request_fingerprint = $13
                WHERE id = $1 AND idempotency_key = $12 AND version = $14""",
            *row_values(payment),
            expected_version,
        )
        return bool(status == "UPDATE 1")

    @translated
    async def put_if_newer(self, payment: Payment) -> bool:
        try:
            row = await self._pool.fetchrow(
                f"""INSERT INTO payment.payments ({COLUMNS}) VALUES ({VALUES})
                    ON CONFLICT (id) DO UPDATE SET
                        customer_id = EXCLUDED.customer_id, loan_id = EXCLUDED.loan_id,
                        amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
                        method = EXCLUDED.method, status = EXCLUDED.status, paid_at = EXCLUDED.paid_at,
                        created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                        version = EXCLUDED.version, idempotency_key = EXCLUDED.idempotency_key,
                        request_fingerprint = EXCLUDED.request_fingerprint
                    WHERE payment.payments.version < EXCLUDED.version
                    RETURNING id""",  # noqa: S608 - fixed column lists
                *row_values(payment),
            )
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name != IDEMPOTENCY_KEY_CONSTRAINT:
                raise
            # Not chained: the driver's DETAIL quotes the key, and a cause ends up in span events and tracebacks.
            raise IdempotencyKeyTaken(await self._existing(payment.idempotency_key)) from None
        return row is not None
