"""BatchWriteItem as DynamoDB answers it under pressure: UnprocessedItems come back and are retried until stored."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from chassis.errors import Unavailable
from chassis.ids import new_id
from services.logging.adapters.dynamodb import BATCH_WRITE_ATTEMPTS, DynamoLogRepository, LogTableLayout
from services.logging.domain import LogBatch, LogLevel
from tests.support.logs import a_service, an_entry, recent_hour

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


class PartlyProcessing:
    """The real client, except that BatchWriteItem stores only the first `keep` requests of each call and hands
    the rest back as UnprocessedItems (what a throttled table does; DynamoDB Local never throttles)."""

    def __init__(self, client: DynamoDBClient, keep: int) -> None:
        self._client = client
        self._keep = keep
        self.calls = 0

    async def batch_write_item(self, RequestItems: dict[str, list[Any]], **options: Any) -> dict[str, Any]:
        self.calls += 1
        ((table, requests),) = RequestItems.items()
        if self._keep:
            await self._client.batch_write_item(RequestItems={table: requests[: self._keep]}, **options)
        rest = requests[self._keep :]
        return {"UnprocessedItems": {table: rest} if rest else {}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_unprocessed_items_are_retried_until_every_entry_is_stored(
    dynamodb: DynamoDBClient, log_table: str
) -> None:
    service, t0 = a_service(), recent_hour()
    entries = [an_entry(service, t0 + timedelta(seconds=n)) for n in range(60)]
    flaky = PartlyProcessing(dynamodb, keep=7)

    await DynamoLogRepository(flaky, log_table, LogTableLayout(shards=3)).write(LogBatch(new_id(), entries))  # type: ignore[arg-type]

    stored = await DynamoLogRepository(dynamodb, log_table, LogTableLayout(shards=3)).query(
        service, t0, t0 + timedelta(hours=1), LogLevel.DEBUG, None, 100
    )
    assert {e.id for e in stored} == {e.id for e in entries}
    assert flaky.calls > 3  # 25 + 25 + 10 requests, 7 taken per call: many calls, each resending the rest


async def test_a_table_that_never_takes_the_items_is_unavailable_after_the_retries(
    dynamodb: DynamoDBClient, log_table: str
) -> None:
    stuck = PartlyProcessing(dynamodb, keep=0)
    batch = LogBatch(new_id(), [an_entry(a_service(), recent_hour())])

    with pytest.raises(Unavailable, match="unprocessed"):
        await DynamoLogRepository(stuck, log_table).write(batch)  # type: ignore[arg-type]

    assert stuck.calls == BATCH_WRITE_ATTEMPTS
