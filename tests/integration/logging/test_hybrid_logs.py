"""Table `logs` through the six stages on real PostgreSQL and DynamoDB Local: where batches land, where queries
are served, read-your-writes, shadow comparison, ingestion during an outage, relay crashes, live stage changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chassis.errors import Unavailable
from chassis.ids import new_id
from chassis.page_tokens import PageTokens
from migration.stages import POLICIES, Backend, Stage
from services.logging.adapters.postgres import LogPartitions
from services.logging.domain import LogBatch, LogEntry, LogLevel, entry_order
from services.logging.store import HybridLogStore
from services.logging.use_cases import LogUseCases
from tests.support.dynamodb import OwnDynamo
from tests.support.log_harness import LogHarness
from tests.support.logs import a_service, a_trace, an_entry, recent_hour

DEBUG = LogLevel.DEBUG


def newest_first(entries: list[LogEntry]) -> list[LogEntry]:
    return sorted(entries, key=entry_order, reverse=True)


def a_batch(service: str, start: datetime, size: int, trace_id: str = "") -> LogBatch:
    return LogBatch(
        new_id(), [an_entry(service, start + timedelta(milliseconds=n), trace_id=trace_id) for n in range(size)]
    )


@pytest.mark.parametrize("stage", list(Stage))
async def test_batches_land_where_the_stage_says(log_harness: LogHarness, stage: Stage) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(stage)
    policy = POLICIES[stage]
    service, t0 = a_service(), recent_hour()
    batch = a_batch(service, t0, 30)

    await replica.store.write(batch)
    await replica.hybrid.wait_for_copies()  # the acknowledgement does not wait for the DynamoDB copy

    expected = newest_first(list(batch.entries))
    assert (await log_harness.in_postgres(service, t0) == expected) is policy.writes_postgres
    assert (await log_harness.in_dynamo(service, t0) == expected) is policy.writes_dynamo
    # A copy that succeeded leaves nothing for the relay.
    assert not await replica.hybrid.journal.has_pending([f"service:{service}"])


@pytest.mark.parametrize("stage", list(Stage))
async def test_queries_are_served_where_the_stage_says(log_harness: LogHarness, stage: Stage) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(stage)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    # The stores disagree on purpose, so the answer shows which one served it.
    only_in_postgres = an_entry(service, t0, trace_id=trace)
    only_in_dynamo = an_entry(service, t0 + timedelta(seconds=1), trace_id=trace)
    await log_harness.postgres.write(LogBatch(new_id(), [only_in_postgres]))
    await log_harness.dynamo.write(LogBatch(new_id(), [only_in_dynamo]))

    listed = await replica.store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10)
    traced = await replica.store.trace(trace, 10)
    await replica.hybrid.wait_for_shadow_reads()

    expected = only_in_dynamo if POLICIES[stage].serves is Backend.DYNAMODB else only_in_postgres
    assert listed == traced == [expected]
    compared = POLICIES[stage].compares
    assert (replica.hybrid.shadow.mismatched == 2) is compared
    if compared:
        assert (f"service:{service}", ["<items>"]) in replica.hybrid.shadow.mismatches
        assert (f"trace:{trace}", ["<items>"]) in replica.hybrid.shadow.mismatches


async def test_identical_stores_compare_clean_in_shadow(log_harness: LogHarness) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.SHADOW)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    await replica.store.write(a_batch(service, t0, 20, trace_id=trace))
    await replica.hybrid.wait_for_copies()  # with its copy in flight, a comparison is skipped as pending

    await replica.store.query(service, t0, t0 + timedelta(hours=1), LogLevel.INFO, None, 5)
    await replica.store.trace(trace, 100)
    await replica.hybrid.wait_for_shadow_reads()

    assert (replica.hybrid.shadow.compared, replica.hybrid.shadow.mismatched) == (2, 0)


async def test_a_batch_not_yet_in_dynamodb_is_read_from_postgres(log_harness: LogHarness) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.DYNAMO_PRIMARY)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    batch = a_batch(service, t0, 5, trace_id=trace)
    await log_harness.in_postgres_only(replica, batch)

    assert await log_harness.in_dynamo(service, t0) == []
    assert await replica.store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10) == newest_first(
        list(batch.entries)
    )
    assert await replica.store.trace(trace, 10) == sorted(batch.entries, key=entry_order)

    await replica.relay.drain()
    assert await log_harness.in_dynamo(service, t0) == newest_first(list(batch.entries))


async def test_shadow_comparison_skips_services_with_batches_in_flight(log_harness: LogHarness) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.SHADOW)
    service, t0 = a_service(), recent_hour()
    batch = a_batch(service, t0, 3)
    await log_harness.in_postgres_only(replica, batch)

    await replica.store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10)
    await replica.hybrid.wait_for_shadow_reads()

    assert replica.hybrid.shadow.mismatched == 0
    assert replica.hybrid.shadow.skipped_pending == 1


async def test_ingestion_during_a_dynamodb_outage_fails_nothing_and_the_journal_drains_after(
    log_outage_harness: tuple[LogHarness, OwnDynamo],
) -> None:
    harness, dynamo = log_outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=3)
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=True)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    before = a_batch(service, t0, 50, trace_id=trace)
    await replica.store.write(before)

    dynamo.freeze()
    written: list[LogEntry] = list(before.entries)
    failures = 0
    for n in range(10):
        batch = a_batch(service, t0 + timedelta(minutes=n + 1), 50, trace_id=trace)
        try:
            await replica.store.write(batch)
            written.extend(batch.entries)
            page = await replica.store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 5000)
            assert page == newest_first(written)
            assert len(await replica.store.trace(trace, 5000)) == len(written)
        except Unavailable:
            failures += 1
    backlog = await replica.hybrid.journal.backlog()
    dynamo.thaw()

    assert failures == 0
    assert backlog.pending >= 9  # the inline copies failed: the journal holds the batches
    await asyncio.sleep(1.1)  # the breaker's recovery time and the journal's lease
    await harness.pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = 'logs'")
    await replica.relay.drain()
    assert (await replica.hybrid.journal.backlog()).pending == 0
    assert await harness.in_dynamo(service, t0) == await harness.in_postgres(service, t0) == newest_first(written)


async def test_in_dynamo_only_or_without_fallback_an_outage_is_unavailable(
    log_outage_harness: tuple[LogHarness, OwnDynamo],
) -> None:
    harness, dynamo = log_outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2)
    service, t0 = a_service(), recent_hour()

    dynamo.freeze()
    await harness.set_stage(Stage.DYNAMO_LIVE, fallback=False)
    with pytest.raises(Unavailable):
        await replica.store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10)
    await harness.set_stage(Stage.DYNAMO_ONLY, fallback=True)
    with pytest.raises(Unavailable):
        await replica.store.write(a_batch(service, t0, 2))
    dynamo.thaw()

    assert await harness.in_postgres(service, t0) == []  # dynamo_only writes nothing to PostgreSQL


async def test_a_relay_that_dies_holding_batches_loses_and_duplicates_nothing(
    log_outage_harness: tuple[LogHarness, OwnDynamo],
) -> None:
    harness, dynamo = log_outage_harness
    replica = await harness.replica(dynamo_timeout_seconds=0.2, breaker_failure_threshold=1000)
    await harness.set_stage(Stage.DUAL_WRITE)
    service, t0 = a_service(), recent_hour()
    dynamo.freeze()
    batches = [a_batch(service, t0 + timedelta(minutes=n), 40) for n in range(6)]
    for batch in batches:
        await replica.store.write(batch)
    await replica.hybrid.wait_for_copies()  # each copy tried (and failed) while DynamoDB was frozen
    dynamo.thaw()

    # A relay claims some batches and dies before copying them: its lease is all that is left of it.
    assert len(await replica.hybrid.journal.claim_due(3)) == 3
    await asyncio.sleep(1.1)  # the lease runs out
    await harness.pool.execute("UPDATE migration.journal SET next_attempt_at = now() WHERE table_name = 'logs'")
    # Another relay copies everything; a second pass finds nothing left to copy.
    assert await replica.relay.drain() == 6
    assert await replica.relay.drain() == 0

    everything = newest_first([entry for batch in batches for entry in batch.entries])
    assert await harness.in_dynamo(service, t0) == await harness.in_postgres(service, t0) == everything


async def test_a_stage_change_during_ingestion_is_followed_by_both_replicas_without_errors(
    log_harness: LogHarness,
) -> None:
    replicas = [await log_harness.replica(), await log_harness.replica()]
    await log_harness.set_stage(Stage.DUAL_WRITE)
    service, t0 = a_service(), recent_hour()
    acknowledged: list[LogEntry] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def ingest(index: int) -> None:
        store = replicas[index % 2].store
        minute = 0
        while not stop.is_set():
            batch = a_batch(service, t0 + timedelta(minutes=minute % 60, seconds=index), 20)
            minute += 1
            try:
                await store.write(batch)
                acknowledged.extend(batch.entries)
                listed = await store.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 5000)
                assert {e.id for e in batch.entries} <= {e.id for e in listed}
            except Exception as error:
                errors.append(error)

    workers = [asyncio.create_task(ingest(i)) for i in range(4)]
    try:
        for stage in (Stage.SHADOW, Stage.DYNAMO_LIVE, Stage.DYNAMO_PRIMARY, Stage.DYNAMO_LIVE, Stage.DUAL_WRITE):
            await asyncio.sleep(0.3)
            await log_harness.set_stage(stage)  # fails unless both replicas follow within 1 s
    finally:
        stop.set()  # a failed switch must not leave the writers running (and piling up entries) past the test
        await asyncio.gather(*workers)

    assert errors == []
    assert len(acknowledged) > 200
    everything = newest_first(acknowledged)
    assert await log_harness.in_postgres(service, t0) == everything
    assert await log_harness.in_dynamo(service, t0) == everything


async def test_a_page_token_from_postgres_continues_on_dynamodb_after_a_stage_change(log_harness: LogHarness) -> None:
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.DUAL_WRITE)
    service, t0 = a_service(), recent_hour()
    batch = a_batch(service, t0, 11)
    await replica.store.write(batch)
    use_cases = LogUseCases(replica.store, PageTokens("l" * 32, "logging"), timedelta(days=30))
    window = (t0, t0 + timedelta(hours=1))

    first = await use_cases.query_logs(service, *window, 0, 4, "")
    await log_harness.set_stage(Stage.DYNAMO_PRIMARY)
    rest: list[LogEntry] = []
    token = first.next_page_token
    while token:
        page = await use_cases.query_logs(service, *window, 0, 4, token)
        rest.extend(page.items)
        token = page.next_page_token

    assert [*first.items, *rest] == newest_first(list(batch.entries))


async def test_a_day_without_its_partition_gets_it_on_the_first_write(log_harness: LogHarness) -> None:
    """Maintenance creates partitions ahead of time; should it fall behind, the write creates the day's, not fails."""
    service = a_service()
    far = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=2)
    day = f"{far:%Y%m%d}"
    await log_harness.pool.execute(f"DROP TABLE IF EXISTS logging.entries_p{day}")
    replica = await log_harness.replica()
    await log_harness.set_stage(Stage.DUAL_WRITE)
    partitions = LogPartitions(log_harness.pool, 30)
    store = HybridLogStore(
        replica.hybrid, log_harness.postgres, log_harness.dynamo, ensure_partitions=partitions.maintain
    )
    batch = a_batch(service, far, 3)

    await store.write(batch)

    assert await log_harness.in_postgres(service, far - timedelta(hours=1)) == newest_first(list(batch.entries))


async def test_on_the_way_back_from_dynamo_only_a_pending_trace_is_read_from_both_stores(
    log_harness: LogHarness,
) -> None:
    replica = await log_harness.replica(settle_seconds=30)  # the trace stays pending after the write below
    await log_harness.set_stage(Stage.DYNAMO_ONLY)
    service, t0, trace = a_service(), recent_hour(), a_trace()
    in_dynamo_only = a_batch(service, t0, 3, trace_id=trace)
    await replica.store.write(in_dynamo_only)
    await log_harness.set_stage(Stage.DYNAMO_PRIMARY, fallback=False, postgres_complete=False)

    on_the_way_back = a_batch(service, t0 + timedelta(seconds=1), 2, trace_id=trace)
    await replica.store.write(on_the_way_back)
    assert await replica.hybrid.journal.has_pending([f"trace:{trace}"])

    traced = await replica.store.trace(trace, 10)
    first_three = await replica.store.trace(trace, 3)

    # PostgreSQL alone would miss the entries written in dynamo_only.
    everything = [*in_dynamo_only.entries, *on_the_way_back.entries]
    assert traced == sorted(everything, key=entry_order)
    assert first_three == traced[:3]
