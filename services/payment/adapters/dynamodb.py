"""PaymentRepository on DynamoDB: one table, two sparse GSIs for the listings, idempotency marker items.

Table design (every access pattern is a GetItem or a Query; never a Scan):

    item                pk                       attributes
    payment             "<payment id>"           customer_id, loan_id, paid_sk, amount_minor (N), currency,
                                                 method, status, paid_at, created_at, updated_at (ISO-8601 UTC),
                                                 version (N), idempotency_key, request_fingerprint
    idempotency marker  "IDEMPOTENCY#<key>"      payment_id

    GSI by_customer     customer_id (HASH), paid_sk (RANGE), projection ALL  -> a customer's history
    GSI by_loan         loan_id (HASH),     paid_sk (RANGE), projection ALL  -> a loan's payments

`paid_sk` is "<paid_at as YYYY-MM-DDTHH:MM:SS.ffffffZ>#<payment id>": fixed width, so string order is
(paid_at, id) order, the same keyset order PostgreSQL uses; a PaymentCursor therefore maps to an exclusive
upper bound and pages continue across back ends. Marker items carry no customer_id/loan_id/paid_sk, so the
indexes stay sparse (payments only). GSIs are eventually consistent on real DynamoDB (Local is not): a listing
right after a write may miss it, which is why the hybrid store routes keys with pending or just-copied writes to
PostgreSQL (migration.journal: the settle window).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from botocore.exceptions import ClientError

from chassis.backoff import full_jitter
from chassis.dynamodb_capacity import RETURN_CONSUMED_CAPACITY, describe_call, record_consumed
from chassis.dynamodb_tables import Index, TableDesign, ensure_table, error_code
from chassis.dynamodb_wire import query_page
from chassis.errors import AlreadyExists, Unavailable
from chassis.ids import uuid_from_text
from chassis.money import Money
from chassis.store_errors import dynamodb_errors_translated
from chassis.timestamps import sortable_utc
from services.payment.domain import METHOD_BY_VALUE, STATUS_BY_VALUE, Payment, PaymentCursor
from services.payment.ports import IdempotencyKeyTaken

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
    )

    Item = dict[str, AttributeValueTypeDef]

BY_CUSTOMER: Final = "by_customer"
BY_LOAN: Final = "by_loan"
SORT_KEY: Final = "paid_sk"
MARKER_PREFIX: Final = "IDEMPOTENCY#"
TRANSACTION_ATTEMPTS: Final = 4
# Reasons a transaction was cancelled that mean "try again later", not "the condition says no".
RETRYABLE_CANCELLATIONS: Final = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

translated = dynamodb_errors_translated("payments")


def _datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)  # stored as "...Z": already UTC


def paid_sort_key(paid_at: datetime, payment_id: uuid.UUID) -> str:
    return f"{sortable_utc(paid_at)}#{payment_id}"


def _marker_key(idempotency_key: str) -> Item:
    return {"pk": {"S": f"{MARKER_PREFIX}{idempotency_key}"}}


def payment_item(payment: Payment) -> Item:
    return {
        "pk": {"S": str(payment.id)},
        "customer_id": {"S": str(payment.customer_id)},
        "loan_id": {"S": str(payment.loan_id)},
        SORT_KEY: {"S": paid_sort_key(payment.paid_at, payment.id)},
        "amount_minor": {"N": str(payment.amount.minor_units)},
        "currency": {"S": payment.amount.currency},
        "method": {"S": payment.method.value},
        "status": {"S": payment.status.value},
        "paid_at": {"S": sortable_utc(payment.paid_at)},
        "created_at": {"S": sortable_utc(payment.created_at)},
        "updated_at": {"S": sortable_utc(payment.updated_at)},
        "version": {"N": str(payment.version)},
        "idempotency_key": {"S": payment.idempotency_key},
        "request_fingerprint": {"S": payment.request_fingerprint},
    }


def marker_item(payment: Payment) -> Item:
    """The idempotency marker of a payment: its key leads to the payment's id."""
    return {**_marker_key(payment.idempotency_key), "payment_id": {"S": str(payment.id)}}


def payment_from_item(item: Item) -> Payment:
    """The payment a payment item (not a marker) stands for: the inverse of payment_item."""
    return Payment.from_stored(
        (
            uuid_from_text(item["pk"]["S"]),
            uuid_from_text(item["customer_id"]["S"]),
            uuid_from_text(item["loan_id"]["S"]),
            Money(item["currency"]["S"], int(item["amount_minor"]["N"])),
            METHOD_BY_VALUE[item["method"]["S"]],
            STATUS_BY_VALUE[item["status"]["S"]],
            _datetime(item["paid_at"]["S"]),
            _datetime(item["created_at"]["S"]),
            _datetime(item["updated_at"]["S"]),
            int(item["version"]["N"]),
            item["idempotency_key"]["S"],
            item["request_fingerprint"]["S"],
        )
    )


def _cancellation_codes(error: ClientError) -> list[str]:
    """Per-item reasons of a cancelled transaction, in request order ("None" where that item was fine)."""
    if error_code(error) != "TransactionCanceledException":
        return []
    reasons = error.response.get("CancellationReasons", [])
    return [reason.get("Code", "None") for reason in reasons]


class DynamoPaymentRepository:
    backend = "dynamodb"

    def __init__(self, client: DynamoDBClient, table_name: str, *, query_page_size: int | None = None) -> None:
        """`query_page_size` caps each Query's Limit; tests set it small to force short pages."""
        self._client = client
        self._table = table_name
        self._query_page_size = query_page_size

    @translated
    async def create(self, payment: Payment) -> Payment:
        codes = await self._transact(
            [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": payment_item(payment),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": self._marker(payment),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        # The key is checked first, as PostgreSQL's ON CONFLICT (idempotency_key) does: a replayed create
        # (same id, same key) is answered with the stored payment.
        if codes[1] == "ConditionalCheckFailed":
            raise IdempotencyKeyTaken(await self._holder_of(payment.idempotency_key))
        if codes[0] == "ConditionalCheckFailed":
            raise AlreadyExists("payment", "id")
        return payment_from_item(payment_item(payment))  # as stored: timestamps in UTC

    @translated
    async def get(self, payment_id: uuid.UUID, *, for_write: bool = False) -> Payment | None:
        describe_call(self._table)
        response = await self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": str(payment_id)}},
            ConsistentRead=True,
            ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY,
        )
        record_consumed("GetItem", response)
        item = response.get("Item")
        return payment_from_item(item) if item else None

    @translated
    async def get_by_idempotency_key(self, key: str, *, for_write: bool = False) -> Payment | None:
        describe_call(self._table)
        response = await self._client.get_item(
            TableName=self._table,
            Key=_marker_key(key),
            ConsistentRead=True,
            ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY,
        )
        record_consumed("GetItem", response)
        marker = response.get("Item")
        if not marker:
            return None
        payment = await self.get(uuid.UUID(marker["payment_id"]["S"]))
        # A marker is never deleted; should its payment ever have moved to another key, it no longer answers.
        return payment if payment is not None and payment.idempotency_key == key else None

    async def _holder_of(self, key: str) -> Payment:
        existing = await self.get_by_idempotency_key(key)
        if existing is None:  # the marker and its payment are written in one transaction
            raise RuntimeError("idempotency marker found but no payment holds its key")
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
        return await self._list(BY_CUSTOMER, "customer_id", customer_id, paid_from, paid_to, after, limit)

    @translated
    async def list_for_loan(self, loan_id: uuid.UUID, after: PaymentCursor | None, limit: int) -> list[Payment]:
        return await self._list(BY_LOAN, "loan_id", loan_id, None, None, after, limit)

    async def _list(
        self,
        index: str,
        owner_attribute: str,
        owner: uuid.UUID,
        paid_from: datetime | None,
        paid_to: datetime | None,
        after: PaymentCursor | None,
        limit: int,
    ) -> list[Payment]:
        if limit < 1:
            return []
        describe_call(self._table, index)
        low = sortable_utc(paid_from) if paid_from is not None else None  # inclusive: "T" sorts before "T#id"
        uppers = [sortable_utc(paid_to)] if paid_to is not None else []  # exclusive: no sort key equals "T"
        if after is not None:
            uppers.append(paid_sort_key(after.paid_at, after.payment_id))  # exclusive: the cursor item itself
        high = min(uppers) if uppers else None
        condition = "#owner = :owner"
        values: Item = {":owner": {"S": str(owner)}}
        if low is not None and high is not None:
            if low >= high:
                return []
            # One condition per sort key: BETWEEN is inclusive, so the item at `high` (the cursor) is dropped below.
            condition += " AND #sk BETWEEN :low AND :high"
            values.update({":low": {"S": low}, ":high": {"S": high}})
        elif low is not None:
            condition += " AND #sk >= :low"
            values[":low"] = {"S": low}
        elif high is not None:
            condition += " AND #sk < :high"
            values[":high"] = {"S": high}
        request: QueryInputTypeDef = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            # DynamoDB refuses unused names, so "#sk" is only declared when the sort key is constrained.
            "ExpressionAttributeNames": {
                "#owner": owner_attribute,
                **({"#sk": SORT_KEY} if "#sk" in condition else {}),
            },
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "ReturnConsumedCapacity": RETURN_CONSUMED_CAPACITY,
        }
        payments: list[Payment] = []
        # Limit counts evaluated items and a page also ends at 1 MB: keep querying until full or exhausted.
        while len(payments) < limit:
            wanted = limit - len(payments)
            request["Limit"] = min(wanted, self._query_page_size) if self._query_page_size else wanted
            # Items as sent: botocore's parsing of 50 items cost more than the rest of the service's work on a page.
            response = await query_page(self._client, request)
            record_consumed("Query", response)
            payments.extend(payment_from_item(item) for item in response["Items"] if item[SORT_KEY]["S"] != high)
            next_key = response.get("LastEvaluatedKey")
            if not next_key:
                break
            request["ExclusiveStartKey"] = next_key
        return payments[:limit]

    @translated
    async def update(self, payment: Payment, expected_version: int) -> bool:
        describe_call(self._table)
        try:
            response = await self._client.put_item(
                TableName=self._table,
                Item=payment_item(payment),
                # The idempotency key is fixed at create: its marker keeps pointing at this payment.
                ConditionExpression="#version = :expected AND idempotency_key = :key",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={
                    ":expected": {"N": str(expected_version)},
                    ":key": {"S": payment.idempotency_key},
                },
                ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY,
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        record_consumed("PutItem", response)
        return True

    @translated
    async def put_if_newer(self, payment: Payment) -> bool:
        codes = await self._transact(
            [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": payment_item(payment),
                        "ConditionExpression": "attribute_not_exists(pk) OR #version < :version",
                        "ExpressionAttributeNames": {"#version": "version"},
                        "ExpressionAttributeValues": {":version": {"N": str(payment.version)}},
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": self._marker(payment),
                        # Replays rewrite the same marker; a key held by another payment is a conflict.
                        "ConditionExpression": "attribute_not_exists(pk) OR payment_id = :id",
                        "ExpressionAttributeValues": {":id": {"S": str(payment.id)}},
                    }
                },
            ]
        )
        if codes[0] == "ConditionalCheckFailed":
            return False
        if codes[1] == "ConditionalCheckFailed":
            raise IdempotencyKeyTaken(await self._holder_of(payment.idempotency_key))
        return True

    def _marker(self, payment: Payment) -> Item:
        return marker_item(payment)

    async def _transact(self, items: list[TransactWriteItemTypeDef]) -> list[str]:
        """Runs the transaction; its per-item cancellation codes, all "None" when it committed."""
        describe_call(self._table)
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                response = await self._client.transact_write_items(
                    TransactItems=items, ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY
                )
            except ClientError as error:
                codes = _cancellation_codes(error)
                if not codes:
                    raise
                if "ConditionalCheckFailed" in codes:
                    return codes
                if not RETRYABLE_CANCELLATIONS.intersection(codes):
                    raise
                # Real DynamoDB cancels a transaction that races another on the same item: back off, retry.
                if attempt + 1 < TRANSACTION_ATTEMPTS:
                    await asyncio.sleep(full_jitter(attempt, base=0.02, cap=1.0))
            else:
                record_consumed("TransactWriteItems", response)
                return ["None"] * len(items)
        raise Unavailable("the payments table in DynamoDB is busy; retry later")


PAYMENT_TABLE: Final = TableDesign(
    partition_key="pk",
    indexes=(Index(BY_CUSTOMER, "customer_id", SORT_KEY), Index(BY_LOAN, "loan_id", SORT_KEY)),
)


async def ensure_payment_table(
    client: DynamoDBClient, table_name: str, *, timeout_seconds: float = 120, poll_seconds: float = 0.2
) -> None:
    """Creates the table and its indexes unless present (safe from several replicas at once); waits for ACTIVE."""
    await ensure_table(client, table_name, PAYMENT_TABLE, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds)
