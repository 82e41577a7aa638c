"""One LogRepository contract, run on the in-memory fake, PostgreSQL and DynamoDB Local (sharded) alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from chassis.ids import new_id
from chassis.page_tokens import PageTokens
from services.logging.adapters.dynamodb import DynamoLogRepository, LogTableLayout
from services.logging.adapters.postgres import PostgresLogRepository, query_statement
from services.logging.domain import LogBatch, LogCursor, LogEntry, LogLevel, entry_order
from services.logging.ports import LogRepository
from services.logging.use_cases import LogUseCases
from tests.support.fakes.log_repository import InMemoryLogRepository
from tests.support.logs import a_service, a_trace, an_entry, recent_hour

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

BACKENDS = ["memory", "postgres", "dynamodb", "dynamodb-short-pages"]
DEBUG = LogLevel.DEBUG


@pytest.fixture(params=BACKENDS)
def repository(
    request: pytest.FixtureRequest, log_pool: asyncpg.Pool, dynamodb: DynamoDBClient, log_table: str
) -> LogRepository:
    backend: str = request.param
    if backend == "memory":
        return InMemoryLogRepository()
    if backend == "postgres":
        return PostgresLogRepository(log_pool)
    if backend == "dynamodb":
        return DynamoLogRepository(dynamodb, log_table, LogTableLayout(shards=4))
    # Many shards and a Query limit of 2: every page is stitched from many round trips and shard merges.
    return DynamoLogRepository(dynamodb, log_table, LogTableLayout(shards=7), query_page_size=2)


async def write(repository: LogRepository, *entries: LogEntry) -> None:
    await repository.write(LogBatch(new_id(), list(entries)))


async def all_pages(
    repository: LogRepository, service: str, start: object, end: object, level: LogLevel, page: int
) -> list[LogEntry]:
    found: list[LogEntry] = []
    before: LogCursor | None = None
    for _ in range(200):
        rows = await repository.query(service, start, end, level, before, page)  # type: ignore[arg-type]
        found.extend(rows)
        if len(rows) < page:
            return found
        before = LogCursor(rows[-1].time, rows[-1].id)
    raise AssertionError("pagination did not end")


async def test_a_service_s_entries_come_newest_first_with_every_field_intact(repository: LogRepository) -> None:
    service, t0, trace = a_service(), recent_hour(), a_trace()
    older = an_entry(service, t0 + timedelta(minutes=1), LogLevel.WARNING, trace_id=trace, span_id="00f067aa0ba902b7")
    newer = an_entry(service, t0 + timedelta(minutes=2), attributes={})
    await write(repository, older, newer)

    found = await repository.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10)

    assert found == [newer, older]


async def test_entries_at_the_same_instant_are_ordered_by_id(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour() + timedelta(seconds=5)
    same_time = [an_entry(service, t0) for _ in range(6)]
    await write(repository, *same_time)

    found = await repository.query(service, t0, t0 + timedelta(seconds=1), DEBUG, None, 10)

    assert [e.id for e in found] == sorted((e.id for e in same_time), reverse=True)


async def test_the_range_includes_from_and_excludes_to(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    at_from, inside, at_to = (an_entry(service, t0 + timedelta(minutes=m)) for m in (10, 20, 30))
    await write(repository, at_from, inside, at_to)

    found = await repository.query(service, t0 + timedelta(minutes=10), t0 + timedelta(minutes=30), DEBUG, None, 10)

    assert found == [inside, at_from]


async def test_a_minimum_level_keeps_that_level_and_above(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    entries = [an_entry(service, t0 + timedelta(seconds=n), LogLevel((n % 5) + 1)) for n in range(20)]
    await write(repository, *entries)

    found = await all_pages(repository, service, t0, t0 + timedelta(hours=1), LogLevel.ERROR, 3)

    expected = sorted((e for e in entries if e.level >= LogLevel.ERROR), key=entry_order, reverse=True)
    assert found == expected


async def test_pages_across_hours_and_shards_give_every_entry_once_in_order(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour() - timedelta(hours=3)
    # Five hours, some of them empty, uneven density; entries land in many shards of each hour.
    minutes = [0, 1, 1, 2, 59, 61, 62, 190, 191, 192, 193, 194, 195, 299]
    entries = [an_entry(service, t0 + timedelta(minutes=m, microseconds=n)) for n, m in enumerate(minutes)]
    await write(repository, *entries)

    for page_size in (1, 4, 50):
        found = await all_pages(repository, service, t0, t0 + timedelta(hours=5), DEBUG, page_size)
        assert found == sorted(entries, key=entry_order, reverse=True), f"page size {page_size}"


async def test_a_cursor_continues_strictly_after_the_last_entry(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    entries = [an_entry(service, t0 + timedelta(seconds=n // 2)) for n in range(8)]  # pairs share an instant
    await write(repository, *entries)
    ordered = sorted(entries, key=entry_order, reverse=True)

    after_third = await repository.query(
        service, t0, t0 + timedelta(hours=1), DEBUG, LogCursor(ordered[2].time, ordered[2].id), 10
    )

    assert after_third == ordered[3:]


async def test_services_do_not_see_each_other_even_when_one_name_prefixes_another(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    mine, longer_name = an_entry(service, t0), an_entry(f"{service}-gateway", t0)
    await write(repository, mine, longer_name)

    assert await repository.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10) == [mine]


async def test_writing_an_entry_again_stores_it_once(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    entry = an_entry(service, t0)
    await write(repository, entry)
    await write(repository, entry, entry)

    assert await repository.query(service, t0, t0 + timedelta(hours=1), DEBUG, None, 10) == [entry]


async def test_a_trace_gives_every_entry_of_every_service_in_time_order(repository: LogRepository) -> None:
    trace, other_trace, t0 = a_trace(), a_trace(), recent_hour()
    gateway, payment = a_service(), a_service()
    entries = [
        an_entry(gateway, t0 + timedelta(milliseconds=1), trace_id=trace),
        an_entry(payment, t0 + timedelta(milliseconds=2), trace_id=trace),
        an_entry(payment, t0 + timedelta(hours=1, milliseconds=3), LogLevel.ERROR, trace_id=trace),
        an_entry(gateway, t0 + timedelta(milliseconds=4), trace_id=other_trace),
        an_entry(gateway, t0 + timedelta(milliseconds=5)),
    ]
    await write(repository, *reversed(entries))

    assert await repository.trace(trace, 100) == entries[:3]
    assert await repository.trace(trace, 2) == entries[:2]
    assert await repository.trace(a_trace(), 100) == []


async def test_a_large_batch_is_stored_whole(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    entries = [an_entry(service, t0 + timedelta(milliseconds=n)) for n in range(1000)]
    await write(repository, *entries)

    found = await all_pages(repository, service, t0, t0 + timedelta(hours=1), DEBUG, 500)

    assert len(found) == 1000
    assert {e.id for e in found} == {e.id for e in entries}


async def test_an_empty_or_reversed_range_finds_nothing(repository: LogRepository) -> None:
    service, t0 = a_service(), recent_hour()
    await write(repository, an_entry(service, t0))

    assert await repository.query(service, t0, t0, DEBUG, None, 10) == []
    assert await repository.query(service, t0 + timedelta(minutes=1), t0, DEBUG, None, 10) == []


async def test_a_postgres_page_reads_only_the_partitions_and_index_range_it_needs(log_pool: asyncpg.Pool) -> None:
    t0 = recent_hour()
    statement = query_statement(
        "svc", t0, t0 + timedelta(hours=1), LogLevel.WARNING, LogCursor(t0 + timedelta(minutes=5), uuid.uuid4()), 50
    )
    async with log_pool.acquire() as connection, connection.transaction():
        # Once autovacuum has analysed a tiny partition the planner may rightly scan it whole, or bitmap-scan and
        # sort its two rows (both seen in full runs); with those priced out, the plan shows what the index can do.
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_bitmapscan = off")
        explained = await connection.fetch(f"EXPLAIN {statement[0]}", *statement[1:])
    plan = "\n".join(row[0] for row in explained)

    assert "Index Scan Backward using entries_p" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert plan.count(" on entries_p") == 1, f"an hour lies in one day's partition:\n{plan}"


async def test_a_postgres_trace_lookup_probes_the_trace_index_of_each_partition(log_pool: asyncpg.Pool) -> None:
    async with log_pool.acquire() as connection, connection.transaction():
        # Empty or tiny partitions cost nothing to scan whole, so the planner may rightly prefer that once they
        # are analysed; with sequential scans priced out, the plan shows what the indexes make possible.
        await connection.execute("SET LOCAL enable_seqscan = off")
        explained = await connection.fetch(
            "EXPLAIN SELECT * FROM logging.entries WHERE trace_id = $1 ORDER BY time, id LIMIT 10", a_trace()
        )
    plan = "\n".join(row[0] for row in explained)

    assert "trace_id_time_id_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "Sort" not in plan, plan


async def test_a_query_over_every_representable_time_is_cut_to_what_retention_can_hold(
    repository: LogRepository,
) -> None:
    service, t0 = a_service(), recent_hour()
    entries = [an_entry(service, t0 + timedelta(minutes=n)) for n in range(3)]
    await write(repository, *entries)
    # A day's retention keeps the cut window (retention plus grace) a few days of hours, quick on every back end.
    logs = LogUseCases(repository, PageTokens("k" * 32, "logs"), timedelta(days=1))
    first, last = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)

    # Uncut, DynamoDB would be read hour by hour from year 9999 down to year 1 (and fail stepping past it).
    page = await asyncio.wait_for(logs.query_logs(service, first, last, 0, 10, ""), timeout=10)
    at_the_start = await asyncio.wait_for(logs.query_logs(service, None, first + timedelta(minutes=30), 0, 10, ""), 10)

    assert [e.id for e in page.items] == [e.id for e in reversed(entries)]
    assert at_the_start.items == []
