"""The payments table as the migration toolkit sees it: rows by id, each a payment item and its idempotency marker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from migration.table_spec import Executor, Item, ItemKey, KeyColumn, RestoredPage, TableSpec
from services.payment.adapters.dynamodb import MARKER_PREFIX, marker_item, payment_from_item, payment_item
from services.payment.adapters.postgres import COLUMNS, payment_from_row, row_values

# The columns' types, in COLUMNS order, for one INSERT of a whole page from arrays (the reverse sync's restore).
# Packed by hand (fmt: skip): the formatter would give each a line of its own.
PAYMENT_TYPES = (
    "uuid", "uuid", "uuid", "bigint", "text", "text", "text", "timestamptz", "timestamptz", "timestamptz", "bigint",
    "text", "text",
)  # fmt: skip
UPSERT_PAYMENTS = f"""
    INSERT INTO payment.payments ({COLUMNS})
    SELECT * FROM unnest({", ".join(f"${n}::{kind}[]" for n, kind in enumerate(PAYMENT_TYPES, 1))})
    ON CONFLICT (id) DO UPDATE SET
        customer_id = EXCLUDED.customer_id, loan_id = EXCLUDED.loan_id, amount_minor = EXCLUDED.amount_minor,
        currency = EXCLUDED.currency, method = EXCLUDED.method, status = EXCLUDED.status,
        paid_at = EXCLUDED.paid_at, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
        version = EXCLUDED.version, idempotency_key = EXCLUDED.idempotency_key,
        request_fingerprint = EXCLUDED.request_fingerprint
    WHERE payment.payments.version < EXCLUDED.version
    RETURNING (xmax = 0) AS inserted
"""  # noqa: S608 - fixed column lists


class PaymentSpec(TableSpec):
    """payment.payments by id; each row is a payment item and its idempotency marker."""

    name = "payments"
    source = "payment.payments"
    key_columns = (KeyColumn("id", "uuid"),)
    key_attributes = ("pk",)
    lock_rows = True

    def items(self, row: asyncpg.Record) -> list[Item]:
        payment = payment_from_row(row)
        return [payment_item(payment), marker_item(payment)]

    async def rows_for_items(self, executor: Executor, keys: Sequence[ItemKey], *, lock: bool) -> list[asyncpg.Record]:
        ids = [key[0] for key in keys if not key[0].startswith(MARKER_PREFIX)]
        idempotency_keys = [key[0].removeprefix(MARKER_PREFIX) for key in keys if key[0].startswith(MARKER_PREFIX)]
        rows = await executor.fetch(
            f"""SELECT * FROM payment.payments WHERE id = ANY($1::text[]::uuid[]) OR idempotency_key = ANY($2::text[])
                ORDER BY id{" FOR SHARE" if lock else ""}""",  # noqa: S608 - a fixed clause
            ids,
            idempotency_keys,
        )
        return list(rows)

    async def rows_for_journal_keys(self, executor: Executor, journal_keys: Sequence[str]) -> list[asyncpg.Record]:
        # A payment is journaled under its id (services.payment.store).
        rows = await executor.fetch(
            "SELECT * FROM payment.payments WHERE id = ANY($1::text[]::uuid[]) ORDER BY id", list(journal_keys)
        )
        return list(rows)

    def journal_refs(self, key: ItemKey, row: asyncpg.Record | None) -> tuple[str, ...]:
        # The item's own read keys among those services.payment.store.routing_keys journals (the customer's and the
        # loan's lists name every payment of theirs, so they would hold back far more than this item).
        if key[0].startswith(MARKER_PREFIX):
            return (f"idempotency:{key[0].removeprefix(MARKER_PREFIX)}",)
        return (f"payment:{key[0]}",)

    def delete_condition(self, item: Item) -> dict[str, Any]:
        if "version" not in item:
            return {}
        return {
            "ConditionExpression": "#version = :seen",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":seen": item["version"]},
        }

    async def restore(self, pool: asyncpg.Pool, items: Sequence[Item], run_id: int) -> RestoredPage:
        """Insert, or update only over an older version: a newer version written since the switch is kept."""
        payments = [payment_from_item(item) for item in items if not item["pk"]["S"].startswith(MARKER_PREFIX)]
        skipped = len(items) - len(payments)
        if not payments:
            return RestoredPage(skipped=skipped)

        async def upsert(batch: Sequence[Any]) -> list[asyncpg.Record]:
            columns = list(zip(*(row_values(payment) for payment in batch), strict=True))
            return list(await pool.fetch(UPSERT_PAYMENTS, *(list(column) for column in columns)))

        try:
            rows = await upsert(payments)
            conflicts: list[str] = []
        except asyncpg.UniqueViolationError:
            # An idempotency key PostgreSQL gives another payment: find which, write the others one by one.
            rows, conflicts = [], []
            for payment in payments:
                try:
                    rows += await upsert([payment])
                except asyncpg.UniqueViolationError:
                    conflicts.append(str(payment.id))
        inserted = sum(1 for row in rows if row["inserted"])
        updated = len(rows) - inserted
        kept = len(payments) - len(rows) - len(conflicts)
        return RestoredPage(inserted, updated, kept, skipped, tuple(conflicts))
