"""Bulk DynamoDB calls for the toolkit: batched writes and reads retried with backoff and jitter, paced by a rate."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from chassis.backoff import full_jitter
from chassis.dynamodb_batches import BATCH_WRITE_LIMIT, write_all
from chassis.dynamodb_capacity import READ_OPERATIONS, RETURN_CONSUMED_CAPACITY, record_consumed
from chassis.errors import Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import KeysAndAttributesTypeDef, WriteRequestTypeDef

    from migration.table_spec import Item

WRITE_BATCH: Final = BATCH_WRITE_LIMIT
GET_BATCH: Final = 100  # and on one BatchGetItem
ATTEMPTS: Final = 10


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


class RateLimiter:
    """A token bucket of items per second shared by a table's workers; None: no limit.

    The bucket holds at most one second of tokens, so a pause is not followed by a burst above the rate. The rate may
    change while it runs (AdaptiveRate lowers and raises it). The clock and sleep are the event loop's unless a test
    gives its own. It keeps what it did: items let through, seconds waited, when it started and last let some through.
    """

    def __init__(
        self, per_second: float | None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.rate = per_second
        self._tokens = per_second or 0.0
        self._clock, self._sleep = clock, sleep
        self._updated = self.started = self.last_grant = clock()
        self._lock = asyncio.Lock()
        self.granted = 0
        self.waited = 0.0

    async def acquire(self, items: int) -> None:
        if not self.rate:
            return
        async with self._lock:  # first come, first served: waiting workers queue here
            while True:
                rate = self.rate
                now = self._clock()
                self._tokens = min(rate, self._tokens + (now - self._updated) * rate)
                self._updated = now
                # A request larger than the bucket proceeds once the bucket is full, then owes the rest.
                # (A hair of tolerance: refilled tokens are a float product, and a wait of 1e-17 s moves no clock.)
                if self._tokens + 1e-9 >= min(items, rate):
                    self._tokens -= items
                    self.granted += items
                    self.last_grant = now
                    return
                wait = (min(items, rate) - self._tokens) / rate
                self.waited += wait
                await self._sleep(wait)

    def refund(self, items: int) -> None:
        """Gives back tokens taken for items a call did not return (a Scan page shorter than its Limit)."""
        if self.rate and items > 0:
            self._tokens = min(self.rate, self._tokens + items)
            self.granted -= items


class AdaptiveRate:
    """AIMD on the latency of each paced call, between a floor and the configured rate (the ceiling).

    The rule: the baseline is the lowest smoothed latency seen (an exponentially weighted average, each call
    weighing BASELINE_WEIGHT), i.e. how fast DynamoDB answers this reader when nothing loads it. A call slower than
    `slow_factor` x the baseline halves the rate (multiplicative decrease, never below FLOOR of the ceiling); any other
    call adds STEP of the ceiling (additive increase, never above it). A call sent before the last cut went out at the
    old rate, so it does not cut again: one cut per round of congestion. Our own scans slowing DynamoDB down is what
    this detects, as is anyone else's load: either way the reader backs off while DynamoDB is slower.
    """

    BASELINE_WEIGHT: Final = 0.2
    DECREASE: Final = 0.5
    STEP: Final = 0.05
    FLOOR: Final = 0.05

    def __init__(self, ceiling: float, slow_factor: float, clock: Clock = time.monotonic) -> None:
        self.ceiling, self.slow_factor = ceiling, slow_factor
        self.rate = ceiling
        self.lowest = ceiling
        self.cuts = 0
        self.baseline: float | None = None
        self._smoothed: float | None = None
        self._cut_at = float("-inf")
        self._clock = clock

    def observe(self, started: float, latency: float) -> float:
        """Takes one call's latency (it was sent at `started`, on the same clock); returns the rate to use now."""
        weight = self.BASELINE_WEIGHT
        self._smoothed = latency if self._smoothed is None else (1 - weight) * self._smoothed + weight * latency
        self.baseline = self._smoothed if self.baseline is None else min(self.baseline, self._smoothed)
        if latency > self.slow_factor * self.baseline:
            if started >= self._cut_at:
                self.rate = max(self.ceiling * self.FLOOR, self.rate * self.DECREASE)
                self._cut_at = self._clock()
                self.cuts += 1
                self.lowest = min(self.lowest, self.rate)
        else:
            self.rate = min(self.ceiling, self.rate + self.ceiling * self.STEP)
        return self.rate


@dataclass(frozen=True)
class Pacing:
    """How a bulk reader paces its DynamoDB calls, per table: the live system's traffic comes first."""

    rate_limit: float | None = None  # items per second; None: as fast as it goes
    backoff: bool = True  # with a rate limit: AIMD on each call's latency (AdaptiveRate)
    slow_factor: float = 2.0  # a call this many times slower than the baseline halves the rate


@dataclass(frozen=True)
class PaceReport:
    """What a pacer did, for a summary."""

    rate_limit: float | None
    items: int  # let through (as asked for: a Scan's Limit less what the page did not return, a BatchGetItem's keys)
    waited: float  # seconds the callers waited for the rate limit, added up
    seconds: float  # from the pacer's start to the last items it let through
    lowest_rate: float | None  # the lowest rate the backoff went down to
    cuts: int  # times the backoff halved the rate


class Pacer:
    """Paces one table's bulk DynamoDB calls: a RateLimiter, and AdaptiveRate steering its rate when backing off."""

    def __init__(self, pacing: Pacing, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.pacing = pacing
        self.limiter = RateLimiter(pacing.rate_limit, clock=clock, sleep=sleep)
        self.adaptive = (
            AdaptiveRate(pacing.rate_limit, pacing.slow_factor, clock) if pacing.rate_limit and pacing.backoff else None
        )
        self._clock = clock

    async def call(self, items: int, request: Callable[[], Awaitable[T]], used: Callable[[T], int] | None = None) -> T:
        """Runs `request` once `items` tokens are there; `used` says how many of them its answer took."""
        await self.limiter.acquire(items)
        started = self._clock()
        result = await request()
        if self.adaptive is not None:
            self.limiter.rate = self.adaptive.observe(started, self._clock() - started)
        if used is not None:
            self.limiter.refund(items - used(result))
        return result

    def report(self) -> PaceReport:
        limiter, adaptive = self.limiter, self.adaptive
        return PaceReport(
            self.pacing.rate_limit,
            limiter.granted,
            limiter.waited,
            limiter.last_grant - limiter.started,
            None if adaptive is None else adaptive.lowest,
            0 if adaptive is None else adaptive.cuts,
        )


UNPACED = Pacing()

# What a call that touches no index asks for: one figure for the table (a Scan or a BatchGetItem of the base table).
RETURN_TOTAL: Final = "TOTAL"


@dataclass
class Consumed:
    """Capacity units DynamoDB reported consumed by a job's calls, read and written (table and indexes together)."""

    read: float = 0.0
    write: float = 0.0

    def add(self, operation: str, response: Mapping[str, Any]) -> None:
        """Adds what one response of `operation` (the DynamoDB API, e.g. "Scan") reports."""
        reported = response.get("ConsumedCapacity") or []
        entries: list[Mapping[str, Any]] = reported if isinstance(reported, list) else [reported]
        units = sum(_entry_units(entry) for entry in entries)
        if operation in READ_OPERATIONS:
            self.read += units
        else:
            self.write += units

    def __iadd__(self, other: Consumed) -> Consumed:
        self.read += other.read
        self.write += other.write
        return self


def _entry_units(entry: Mapping[str, Any]) -> float:
    """One ConsumedCapacity entry's units: its CapacityUnits total, or the sum of its parts when only those came."""
    if "CapacityUnits" in entry:
        return float(entry["CapacityUnits"])
    parts = [entry.get("Table", {}), *entry.get("GlobalSecondaryIndexes", {}).values()]
    return sum(float(part.get("CapacityUnits", 0.0)) for part in parts)


def record(operation: str, response: Mapping[str, Any], consumed: Consumed | None) -> None:
    """Counts a response's consumed capacity (the loanbook.dynamodb.consumed_capacity metric) and adds it to the job's
    figures."""
    record_consumed(operation, response)
    if consumed is not None:
        consumed.add(operation, response)


def scanned(response: Any) -> int:
    """Items a Scan page returned (what a paced Scan is charged)."""
    return len(response.get("Items", []))


async def batch_write(
    client: DynamoDBClient,
    table: str,
    items: Sequence[Item],
    *,
    concurrency: int = 4,
    pacer: Pacer | None = None,
    slots: asyncio.Semaphore | None = None,
    consumed: Consumed | None = None,
) -> None:
    """Puts every item, BatchWriteItem by BatchWriteItem, `concurrency` calls at a time (or as many as `slots`
    allows, when the caller shares one semaphore between several batch_write calls); UnprocessedItems are sent
    again after a backoff with jitter; Unavailable once a chunk still has unprocessed items after ATTEMPTS. The
    capacity each call consumed (table and indexes) is counted, and added to `consumed` if given."""
    chunks = [items[start : start + WRITE_BATCH] for start in range(0, len(items), WRITE_BATCH)]
    slots = slots or asyncio.Semaphore(concurrency)

    async def write(chunk: Sequence[Item]) -> None:
        async with slots:

            async def paced(pending: Sequence[WriteRequestTypeDef]) -> Any:
                call = functools.partial(
                    client.batch_write_item,
                    RequestItems={table: list(pending)},
                    ReturnConsumedCapacity=RETURN_CONSUMED_CAPACITY,  # the indexes' writes too
                )
                response = await (pacer or Pacer(UNPACED)).call(len(pending), call)
                if consumed is not None:
                    consumed.add("BatchWriteItem", response)  # write_all counts the metric
                return response

            requests: list[WriteRequestTypeDef] = [{"PutRequest": {"Item": item}} for item in chunk]
            await write_all(
                client, table, requests, attempts=ATTEMPTS, what=f"items of {table}", backoff_cap=2.0, send=paced
            )

    await asyncio.gather(*(write(chunk) for chunk in chunks))


async def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[Item],
    *,
    concurrency: int = 4,
    pacer: Pacer | None = None,
    consumed: Consumed | None = None,
) -> list[Item]:
    """The items with these keys that exist (strongly consistent reads), in no particular order; UnprocessedKeys
    are asked for again after a backoff with jitter. Each BatchGetItem is paced by `pacer`, if given; the capacity
    it consumed is counted, and added to `consumed` if given."""
    pacer = pacer or Pacer(UNPACED)
    chunks = [keys[start : start + GET_BATCH] for start in range(0, len(keys), GET_BATCH)]
    slots = asyncio.Semaphore(concurrency)

    async def get(chunk: Sequence[Item]) -> list[Item]:
        found: list[Item] = []
        async with slots:
            request: dict[str, KeysAndAttributesTypeDef] = {table: {"Keys": list(chunk), "ConsistentRead": True}}
            for attempt in range(ATTEMPTS):
                call = functools.partial(
                    client.batch_get_item, RequestItems=request, ReturnConsumedCapacity=RETURN_TOTAL
                )
                response = await pacer.call(len(request[table]["Keys"]), call)
                record("BatchGetItem", response, consumed)
                found.extend(response.get("Responses", {}).get(table, []))
                unprocessed = response.get("UnprocessedKeys", {})
                if not unprocessed:
                    return found
                request = cast("dict[str, KeysAndAttributesTypeDef]", unprocessed)
                await asyncio.sleep(full_jitter(attempt, base=0.025, cap=2.0))
            raise Unavailable(f"DynamoDB left keys of {table} unread after {ATTEMPTS} tries")

    pages = await asyncio.gather(*(get(chunk) for chunk in chunks))
    return [item for page in pages for item in page]


async def item_count(client: DynamoDBClient, table: str) -> int:
    """DescribeTable's ItemCount: DynamoDB refreshes it about every six hours, so it is an estimate."""
    description: dict[str, Any] = dict((await client.describe_table(TableName=table))["Table"])
    return int(description.get("ItemCount", 0))
