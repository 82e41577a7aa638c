"""The reverse sync's and verify's DynamoDB reads paced on DynamoDB Local: kept to the rate limit, backing off when
DynamoDB answers slower (the rate is checked on what the pacer recorded, never on the wall clock)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from migration.stages import Stage
from tests.support.toolkit import Stores, migrated_to_dynamo_only
from toolkit.dynamo_io import PaceReport, Pacing
from toolkit.reverse_sync import ReverseSyncOptions, run_reverse_sync
from toolkit.verify import VerifyOptions, run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

RATE = 100.0  # items/s: well under what DynamoDB Local scans, so the limit is what sets the pace
PAGE = 25


def kept_to(report: PaceReport | None, rate: float, largest_call: int) -> PaceReport:
    """A token bucket's bound: from its start to its last grant it let through at most one second's worth at once
    (the bucket), the rate for the time since, and one call's overdraft."""
    assert report is not None
    assert report.rate_limit == rate
    assert report.items <= rate * (report.seconds + 1) + largest_call, report
    return report


async def on_the_way_back(stores: Stores) -> None:
    control = await migrated_to_dynamo_only(stores, payments=150, logs=0)
    await control.change("payments", stage=Stage.DYNAMO_PRIMARY, fallback=False, who="test")


async def test_a_paced_reverse_sync_and_verify_keep_to_the_rate_limit(stores: Stores) -> None:
    await on_the_way_back(stores)
    pacing = Pacing(rate_limit=RATE)

    sync_options = ReverseSyncOptions(segments=4, page_items=PAGE, settle_seconds=0, pacing=pacing)

    [synced] = await run_reverse_sync(
        stores.pool, stores.dynamodb, stores.specs("payments"), stores.table_name, sync_options
    )
    [verified] = await run_verify(
        stores.pool,
        stores.dynamodb,
        stores.specs("payments"),
        stores.table_name,
        VerifyOptions(workers=1, scan_page_items=PAGE, pacing=pacing),
    )

    assert (synced.items_scanned, synced.clean, verified.clean) == (300, True, True)
    sync_pace = kept_to(synced.pacing, RATE, PAGE)
    verify_pace = kept_to(verified.pacing, RATE, PAGE)
    # Every item read went through the pacer (a Scan is charged what its page returned).
    assert sync_pace.items == synced.items_scanned
    assert verify_pace.items >= verified.items_scanned == 300


class SlowingDynamo:
    """DynamoDB Local that, after a few Scan pages, answers each one five times slower than the slowest so far."""

    def __init__(self, client: Any, fast_pages: int) -> None:
        self._client = client
        self._fast_pages = fast_pages
        self._slowest = 0.0
        self.pages = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def scan(self, **request: Any) -> Any:
        self.pages += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self._client.scan(**request)
        self._slowest = max(self._slowest, loop.time() - started)
        if self.pages > self._fast_pages:
            await asyncio.sleep(4 * self._slowest)  # stands in for DynamoDB loaded by someone's traffic
        return response


async def test_a_reverse_sync_backs_off_when_dynamodb_answers_slower(stores: Stores) -> None:
    await on_the_way_back(stores)
    slowing = SlowingDynamo(stores.dynamodb, fast_pages=4)
    options = ReverseSyncOptions(segments=1, page_items=PAGE, settle_seconds=0, pacing=Pacing(rate_limit=10_000))

    client = cast("DynamoDBClient", slowing)

    [synced] = await run_reverse_sync(stores.pool, client, stores.specs("payments"), stores.table_name, options)

    assert synced.items_scanned == 300
    assert slowing.pages > 5
    assert synced.pacing is not None
    assert synced.pacing.cuts >= 1
    assert synced.pacing.lowest_rate is not None
    assert synced.pacing.lowest_rate <= 5_000
