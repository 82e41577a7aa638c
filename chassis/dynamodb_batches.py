"""BatchWriteItem until DynamoDB has processed every request: what the logging adapter and the toolkit both need."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

from chassis.backoff import full_jitter
from chassis.dynamodb_capacity import RETURN_CONSUMED_CAPACITY, record_consumed
from chassis.errors import Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import WriteRequestTypeDef

BATCH_WRITE_LIMIT: Final = 25  # DynamoDB's cap on one BatchWriteItem

# Sends one BatchWriteItem of these requests (a hook for pacing); by default the client's own call.
Send = Callable[[Sequence["WriteRequestTypeDef"]], Awaitable[Any]]


async def write_all(
    client: DynamoDBClient,
    table: str,
    requests: Sequence[WriteRequestTypeDef],
    *,
    attempts: int,
    what: str = "items",
    backoff_cap: float = 1.0,
    send: Send | None = None,
) -> None:
    """Writes one chunk (at most BATCH_WRITE_LIMIT requests): the UnprocessedItems DynamoDB hands back (throttling,
    a busy partition) are sent again as they came, after a backoff with full jitter; Unavailable when some are
    still unprocessed after `attempts` calls (`what` names them in the message)."""

    async def by_client(pending: Sequence[WriteRequestTypeDef]) -> Any:
        return await client.batch_write_item(
            RequestItems={table: list(pending)}, ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY
        )

    pending: Sequence[WriteRequestTypeDef] = requests
    for attempt in range(attempts):
        response = await (send or by_client)(pending)
        record_consumed("BatchWriteItem", response)  # a `send` of its own may or may not have asked for it
        pending = cast("list[WriteRequestTypeDef]", response.get("UnprocessedItems", {}).get(table, []))
        if not pending:
            return
        await asyncio.sleep(full_jitter(attempt, base=0.025, cap=backoff_cap))
    raise Unavailable(f"DynamoDB left {len(pending)} {what} unprocessed after {attempts} tries")
