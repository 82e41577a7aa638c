"""Retention: expired daily partitions dropped in PostgreSQL (by the service and by a command), TTL in DynamoDB."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from chassis.ids import new_id
from services.logging.adapters.dynamodb import TTL_ATTRIBUTE, DynamoLogRepository, LogTableLayout
from services.logging.adapters.postgres import LogPartitions, PostgresLogRepository
from services.logging.domain import LogBatch, LogLevel
from tests.support.logs import RETENTION_DAYS, a_service, an_entry
from tests.support.system import run_module

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

NOW = datetime.now(UTC)


async def old_entries_in_postgres(pool: asyncpg.Pool, days_ago: int) -> tuple[str, date]:
    """A service with entries `days_ago` days back, in partitions created as they were at that time."""
    then = NOW - timedelta(days=days_ago)
    await LogPartitions(pool, RETENTION_DAYS).maintain(now=then)
    service = a_service()
    await PostgresLogRepository(pool).write(LogBatch(new_id(), [an_entry(service, then), an_entry(service, then)]))
    return service, then.date()


async def count(pool: asyncpg.Pool, service: str) -> int:
    found: int = await pool.fetchval("SELECT count(*) FROM logging.entries WHERE service = $1", service)
    return found


async def test_maintenance_drops_expired_days_with_their_entries_and_keeps_the_window(log_pool: asyncpg.Pool) -> None:
    partitions = LogPartitions(log_pool, RETENTION_DAYS)
    expired, expired_day = await old_entries_in_postgres(log_pool, RETENTION_DAYS + 5)
    kept, kept_day = await old_entries_in_postgres(log_pool, RETENTION_DAYS - 2)
    assert await count(log_pool, expired) == 2

    created, dropped = await partitions.maintain()

    assert expired_day in dropped
    assert await count(log_pool, expired) == 0
    assert await count(log_pool, kept) == 2
    present = await partitions.existing()
    assert kept_day in present
    assert expired_day not in present
    assert all(day + timedelta(days=1) > (NOW - timedelta(days=RETENTION_DAYS)).date() for day in present)
    assert NOW.date() + timedelta(days=3) in present  # days ahead exist before their first entry
    assert created == []  # the window was already there: nothing new to create
    assert await partitions.maintain() == ([], [])  # idempotent


async def test_concurrent_maintenance_by_several_replicas_is_serialised(log_pool: asyncpg.Pool) -> None:
    await old_entries_in_postgres(log_pool, RETENTION_DAYS + 8)
    replicas = [LogPartitions(log_pool, RETENTION_DAYS) for _ in range(4)]

    results = await asyncio.gather(*(replica.maintain() for replica in replicas))

    dropped = [day for _, days in results for day in days]
    assert len(dropped) == len(set(dropped)) > 0  # each expired day dropped exactly once, no replica failed


async def test_the_retention_command_drops_expired_partitions_and_says_which(
    log_pool: asyncpg.Pool, postgres_dsn: str
) -> None:
    expired, expired_day = await old_entries_in_postgres(log_pool, RETENTION_DAYS + 3)
    env = {
        **os.environ,
        "LOANBOOK_LOGGING_POSTGRES_DSN": postgres_dsn,
        "LOANBOOK_LOGGING_RETENTION_DAYS": str(RETENTION_DAYS),
    }

    code, out, err = await run_module("services.logging.retention", env, 60)

    assert code == 0, err
    assert f"retention {RETENTION_DAYS} days: dropped" in out
    assert str(expired_day) in out
    assert await count(log_pool, expired) == 0


async def test_the_retention_command_refuses_a_bad_setting_naming_it(postgres_dsn: str) -> None:
    env = {**os.environ, "LOANBOOK_LOGGING_POSTGRES_DSN": postgres_dsn, "LOANBOOK_LOGGING_RETENTION_DAYS": "0"}

    code, _, err = await run_module("services.logging.retention", env, 60)

    assert code == 2
    assert "LOANBOOK_LOGGING_RETENTION_DAYS" in err


async def test_dynamodb_expires_entries_by_ttl_set_from_their_time_and_the_retention(
    dynamodb: DynamoDBClient, log_table: str
) -> None:
    layout = LogTableLayout(shards=4, retention=timedelta(days=7))
    entry = an_entry(a_service(), NOW - timedelta(hours=1), LogLevel.ERROR)
    await DynamoLogRepository(dynamodb, log_table, layout).write(LogBatch(new_id(), [entry]))

    ttl = (await dynamodb.describe_time_to_live(TableName=log_table))["TimeToLiveDescription"]
    key = {name: layout.item(entry)[name] for name in ("pk", "sk")}
    stored = (await dynamodb.get_item(TableName=log_table, Key=key))["Item"]

    assert ttl.get("TimeToLiveStatus") == "ENABLED"
    assert ttl.get("AttributeName") == TTL_ATTRIBUTE
    assert int(stored[TTL_ATTRIBUTE]["N"]) == int((entry.time + timedelta(days=7)).timestamp())
