"""LogRepository on DynamoDB: write-sharded hourly partitions, a trace index, TTL retention; never a Scan.

Table design:

    pk          "<service>#<YYYYMMDDHH>#<shard>"   the service's hour, split over `shards` partitions by
                                                  entry id, so one busy service spreads its writes
    sk          "<time as YYYY-MM-DDTHH:MM:SS.ffffffZ>#<entry id>"   fixed width: string order is (time, id)
    attributes  level (N), message (S), attributes (M of S), trace_id (S, only when set), span_id (S),
                expires_at (N, epoch seconds: DynamoDB's TTL deletes the item after the retention)

    GSI by_trace  trace_id (HASH), sk (RANGE), projection ALL — sparse: entries without a trace are not in it

A service's time range is read hour by hour, newest first; within an hour the shards are queried side by
side and merged lazily in (time, id) order, each shard fetched only as far as the page needs. Shard counts
may grow (queries of shards that never got writes are empty) but must never shrink, or older entries in the
dropped shards would no longer be read.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from chassis.dynamodb_batches import BATCH_WRITE_LIMIT, write_all
from chassis.dynamodb_capacity import RETURN_CONSUMED_CAPACITY, describe_call, record_consumed
from chassis.dynamodb_tables import Index, TableDesign, ensure_table
from chassis.dynamodb_wire import query_page
from chassis.ids import uuid_from_text
from chassis.store_errors import dynamodb_errors_translated
from chassis.timestamps import sortable_utc
from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import AttributeValueTypeDef, QueryInputTypeDef, WriteRequestTypeDef

    Item = dict[str, AttributeValueTypeDef]

BY_TRACE: Final = "by_trace"
TTL_ATTRIBUTE: Final = "expires_at"
LOG_TABLE: Final = TableDesign(
    partition_key="pk", sort_key="sk", indexes=(Index(BY_TRACE, "trace_id", "sk"),), ttl_attribute=TTL_ATTRIBUTE
)
BATCH_WRITE_ATTEMPTS: Final = 8
BUCKET: Final = timedelta(hours=1)

translated = dynamodb_errors_translated("logs")


def sort_key(time: datetime, entry_id: uuid.UUID) -> str:
    return f"{sortable_utc(time)}#{entry_id}"


def bucket_start(time: datetime) -> datetime:
    return time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def partition_key(service: str, bucket: datetime, shard: int) -> str:
    return f"{service}#{bucket:%Y%m%d%H}#{shard}"


@dataclass(frozen=True)
class LogTableLayout:
    """How entries spread over partitions; `retention` sets each item's expiry."""

    shards: int = 8
    retention: timedelta = timedelta(days=30)

    def shard_of(self, entry_id: uuid.UUID) -> int:
        # The low bits of a UUIDv7 (or v4) are random, so entries spread evenly whatever their rate.
        return entry_id.int % self.shards

    def item(self, entry: LogEntry) -> Item:
        item: Item = {
            "pk": {"S": partition_key(entry.service, bucket_start(entry.time), self.shard_of(entry.id))},
            "sk": {"S": sort_key(entry.time, entry.id)},
            "level": {"N": str(int(entry.level))},
            "message": {"S": entry.message},
            "attributes": {"M": {key: {"S": value} for key, value in entry.attributes.items()}},
            TTL_ATTRIBUTE: {"N": str(int((entry.time + self.retention).timestamp()))},
        }
        if entry.trace_id:
            item["trace_id"] = {"S": entry.trace_id}
        if entry.span_id:
            item["span_id"] = {"S": entry.span_id}
        return item


def log_entry(item: Item) -> LogEntry:
    time, _, entry_id = item["sk"]["S"].partition("#")
    return LogEntry(
        id=uuid_from_text(entry_id),
        time=datetime.fromisoformat(time),
        service=item["pk"]["S"].split("#", 1)[0],
        level=LogLevel(int(item["level"]["N"])),
        message=item["message"]["S"],
        attributes={key: value["S"] for key, value in item.get("attributes", {}).get("M", {}).items()},
        trace_id=item.get("trace_id", {}).get("S", ""),
        span_id=item.get("span_id", {}).get("S", ""),
    )


@dataclass
class _Shard:
    """One partition's part of a page: items fetched but not yet merged, and where its Query stopped."""

    pk: str
    buffer: deque[Item] = field(default_factory=deque)
    last_key: dict[str, Any] | None = None
    exhausted: bool = False


class DynamoLogRepository:
    backend = "dynamodb"

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        layout: LogTableLayout | None = None,
        *,
        write_concurrency: int = 8,
        query_page_size: int | None = None,
    ) -> None:
        """`write_concurrency` bounds the BatchWriteItem calls one batch has in flight; `query_page_size` caps each
        Query's Limit (tests set it small to force many round trips)."""
        self._client = client
        self._table = table_name
        self.layout = layout or LogTableLayout()
        self._write_slots = asyncio.Semaphore(write_concurrency)
        self._query_page_size = query_page_size

    # --- writes --------------------------------------------------------------------------------------------

    @translated
    async def write(self, batch: LogBatch) -> int:
        describe_call(self._table)
        # One request may not name the same key twice; an entry repeated inside a batch is stored once.
        items = {(item["pk"]["S"], item["sk"]["S"]): item for item in map(self.layout.item, batch.entries)}
        requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in items.values()]
        chunks = [requests[start : start + BATCH_WRITE_LIMIT] for start in range(0, len(requests), BATCH_WRITE_LIMIT)]
        await asyncio.gather(*(self._write_chunk(chunk) for chunk in chunks))
        return len(requests)

    async def _write_chunk(self, requests: list[WriteRequestTypeDef]) -> None:
        async with self._write_slots:
            await write_all(self._client, self._table, requests, attempts=BATCH_WRITE_ATTEMPTS, what="log entries")

    # --- reads ---------------------------------------------------------------------------------------------

    @translated
    async def query(
        self,
        service: str,
        time_from: datetime,
        time_to: datetime,
        min_level: LogLevel,
        before: LogCursor | None,
        limit: int,
    ) -> list[LogEntry]:
        if time_from >= time_to or limit <= 0:
            return []
        # Upper bound (exclusive) as a sort key: the cursor's own key, or the bare time `time_to` (every key of
        # a moment t is "t#<id>", greater than "t"), whichever is lower.
        upper = sortable_utc(time_to)
        newest = time_to - timedelta(microseconds=1)
        if before is not None:
            upper = min(upper, sort_key(before.time, before.id))
            newest = min(newest, before.time)
        lower = sortable_utc(time_from)
        describe_call(self._table)
        found: list[LogEntry] = []
        bucket = bucket_start(newest)
        while len(found) < limit and bucket >= bucket_start(time_from):
            items = await self._merge_bucket(service, bucket, lower, upper, min_level, limit - len(found))
            found.extend(log_entry(item) for item in items)
            bucket -= BUCKET
        return found

    async def _merge_bucket(
        self, service: str, bucket: datetime, lower: str, upper: str, min_level: LogLevel, need: int
    ) -> list[Item]:
        """The newest `need` items of one hour over all its shards, merged in descending sort-key order."""
        shards = [_Shard(partition_key(service, bucket, shard)) for shard in range(self.layout.shards)]
        # A first fetch sized for an even spread, with headroom; a shard that runs dry is topped up as needed.
        first = min(need, math.ceil(need * 1.5 / len(shards)) + 1)
        await asyncio.gather(*(self._fetch(shard, lower, upper, min_level, first) for shard in shards))
        merged: list[Item] = []
        while len(merged) < need:
            dry = [shard for shard in shards if not shard.buffer and not shard.exhausted]
            if dry:
                await asyncio.gather(
                    *(self._fetch(shard, lower, upper, min_level, need - len(merged)) for shard in dry)
                )
                continue
            live = [shard for shard in shards if shard.buffer]
            if not live:
                break
            newest = max(live, key=lambda shard: shard.buffer[0]["sk"]["S"])
            merged.append(newest.buffer.popleft())
        return merged

    async def _fetch(self, shard: _Shard, lower: str, upper: str, min_level: LogLevel, limit: int) -> None:
        request: QueryInputTypeDef = {
            "TableName": self._table,
            # BETWEEN is inclusive; the upper bound is exclusive, so an item equal to it is dropped below.
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lower AND :upper",
            "ExpressionAttributeValues": {":pk": {"S": shard.pk}, ":lower": {"S": lower}, ":upper": {"S": upper}},
            "ScanIndexForward": False,
            "Limit": min(limit, self._query_page_size or limit),
            # Consistent: an entry copied a moment ago must show, or the hybrid store would have to keep a busy
            # service's reads on PostgreSQL (read-your-writes); it costs twice the read capacity of an eventual read.
            "ConsistentRead": True,
            "ReturnConsumedCapacity": RETURN_CONSUMED_CAPACITY,
        }
        if min_level > LogLevel.DEBUG:
            request["FilterExpression"] = "#level >= :min_level"
            request["ExpressionAttributeNames"] = {"#level": "level"}
            request["ExpressionAttributeValues"] = {
                **request["ExpressionAttributeValues"],
                ":min_level": {"N": str(int(min_level))},
            }
        if shard.last_key is not None:
            request["ExclusiveStartKey"] = shard.last_key
        response = await query_page(self._client, request)  # items as sent: see chassis.dynamodb_wire
        record_consumed("Query", response)
        shard.buffer.extend(item for item in response.get("Items", []) if item["sk"]["S"] != upper)
        shard.last_key = response.get("LastEvaluatedKey")
        shard.exhausted = shard.last_key is None

    @translated
    async def trace(self, trace_id: str, limit: int) -> list[LogEntry]:
        describe_call(self._table, BY_TRACE)
        found: list[LogEntry] = []
        start: dict[str, Any] | None = None
        while len(found) < limit:
            request: QueryInputTypeDef = {
                "TableName": self._table,
                "IndexName": BY_TRACE,
                "KeyConditionExpression": "trace_id = :trace",
                "ExpressionAttributeValues": {":trace": {"S": trace_id}},
                "Limit": min(limit - len(found), self._query_page_size or limit),
                "ReturnConsumedCapacity": RETURN_CONSUMED_CAPACITY,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            response = await query_page(self._client, request)
            record_consumed("Query", response)
            found.extend(log_entry(item) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if start is None:
                break
        # The index orders by sort key, i.e. (time, id); entries of one trace come from several services.
        return found


async def ensure_log_table(client: DynamoDBClient, table_name: str, *, poll_seconds: float = 0.2) -> None:
    """Creates the table and its trace index unless present, and turns on TTL expiry by `expires_at`."""
    await ensure_table(client, table_name, LOG_TABLE, poll_seconds=poll_seconds)
