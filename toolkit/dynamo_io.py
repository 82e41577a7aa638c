"""Bulk DynamoDB calls for the toolkit: batched writes and reads retried with backoff and jitter, a rate limit."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from chassis.errors import Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import KeysAndAttributesTypeDef, WriteRequestTypeDef

    from toolkit.specs import Item

WRITE_BATCH: Final = 25  # DynamoDB's cap on one BatchWriteItem
GET_BATCH: Final = 100  # and on one BatchGetItem
ATTEMPTS: Final = 10


def backoff(attempt: int, base: float = 0.025, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter, so throttled workers do not retry in lockstep."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - jitter, not secrets


class RateLimiter:
    """A token bucket of items per second shared by a table's workers (for provisioned capacity); None: no limit.

    The bucket holds at most one second of tokens, so a pause is not followed by a burst above the rate.
    """

    def __init__(self, per_second: float | None) -> None:
        self._rate = per_second
        self._tokens = per_second or 0.0
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, items: int) -> None:
        if not self._rate:
            return
        async with self._lock:  # first come, first served: waiting workers queue here
            while True:
                now = time.monotonic()
                self._tokens = min(self._rate, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                # A request larger than the bucket proceeds once the bucket is full, then owes the rest.
                if self._tokens >= min(items, self._rate):
                    self._tokens -= items
                    return
                await asyncio.sleep((min(items, self._rate) - self._tokens) / self._rate)


async def batch_write(
    client: DynamoDBClient,
    table: str,
    items: Sequence[Item],
    *,
    concurrency: int = 4,
    limiter: RateLimiter | None = None,
    slots: asyncio.Semaphore | None = None,
) -> None:
    """Puts every item, BatchWriteItem by BatchWriteItem, `concurrency` calls at a time (or as many as `slots`
    allows, when the caller shares one semaphore between several batch_write calls); UnprocessedItems are sent
    again after a backoff with jitter; Unavailable once a chunk still has unprocessed items after ATTEMPTS."""
    chunks = [items[start : start + WRITE_BATCH] for start in range(0, len(items), WRITE_BATCH)]
    slots = slots or asyncio.Semaphore(concurrency)

    async def write(chunk: Sequence[Item]) -> None:
        async with slots:
            if limiter is not None:
                await limiter.acquire(len(chunk))
            pending: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in chunk]
            for attempt in range(ATTEMPTS):
                response = await client.batch_write_item(RequestItems={table: pending})
                pending = cast("list[WriteRequestTypeDef]", response.get("UnprocessedItems", {}).get(table, []))
                if not pending:
                    return
                await asyncio.sleep(backoff(attempt))
            raise Unavailable(f"DynamoDB left {len(pending)} items of {table} unprocessed after {ATTEMPTS} tries")

    await asyncio.gather(*(write(chunk) for chunk in chunks))


async def batch_get(client: DynamoDBClient, table: str, keys: Sequence[Item], *, concurrency: int = 4) -> list[Item]:
    """The items with these keys that exist (strongly consistent reads), in no particular order; UnprocessedKeys
    are asked for again after a backoff with jitter."""
    chunks = [keys[start : start + GET_BATCH] for start in range(0, len(keys), GET_BATCH)]
    slots = asyncio.Semaphore(concurrency)

    async def get(chunk: Sequence[Item]) -> list[Item]:
        found: list[Item] = []
        async with slots:
            request: dict[str, KeysAndAttributesTypeDef] = {table: {"Keys": list(chunk), "ConsistentRead": True}}
            for attempt in range(ATTEMPTS):
                response = await client.batch_get_item(RequestItems=request)
                found.extend(response.get("Responses", {}).get(table, []))
                unprocessed = response.get("UnprocessedKeys", {})
                if not unprocessed:
                    return found
                request = cast("dict[str, KeysAndAttributesTypeDef]", unprocessed)
                await asyncio.sleep(backoff(attempt))
            raise Unavailable(f"DynamoDB left keys of {table} unread after {ATTEMPTS} tries")

    pages = await asyncio.gather(*(get(chunk) for chunk in chunks))
    return [item for page in pages for item in page]


async def put_items(client: DynamoDBClient, table: str, items: Sequence[Item]) -> None:
    """PutItem one by one (repairs: few items, each must land whatever BatchWriteItem would do with duplicates)."""
    for item in items:
        await client.put_item(TableName=table, Item=item)


async def item_count(client: DynamoDBClient, table: str) -> int:
    """DescribeTable's ItemCount: DynamoDB refreshes it about every six hours, so it is an estimate."""
    description: dict[str, Any] = dict((await client.describe_table(TableName=table))["Table"])
    return int(description.get("ItemCount", 0))
