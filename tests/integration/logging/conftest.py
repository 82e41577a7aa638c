"""Log stores on real PostgreSQL and DynamoDB Local, built as the logging service builds them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aioboto3
import asyncpg
import pytest

from chassis.ids import new_id
from migration.schema import upgrade_to_head as upgrade_migration_schema
from services.logging.adapters.dynamodb import ensure_log_table
from services.logging.adapters.postgres import LogPartitions
from services.logging.domain import LogEntry, LogLevel
from services.logging.migrations import upgrade_to_head as upgrade_logging_schema

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

RETENTION_DAYS = 30


def dynamodb_session() -> aioboto3.Session:
    return aioboto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1")


def refuse_scan(**_: Any) -> None:
    raise AssertionError("a log access pattern used Scan")


def recent_hour() -> datetime:
    """A few hours ago, on the hour: inside the retention window, with room for entries across hours."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def a_service() -> str:
    """A fresh service name, so tests sharing the stores never see each other's entries."""
    return f"svc-{secrets.token_hex(4)}"


def a_trace() -> str:
    return secrets.token_hex(16)


def an_entry(service: str, time: datetime, level: LogLevel = LogLevel.INFO, **changes: Any) -> LogEntry:
    fields: dict[str, Any] = {
        "id": new_id(),
        "time": time,
        "service": service,
        "level": level,
        "message": f"event at {time.isoformat()}",
        "attributes": {"component": "test", "note": "naïve ✓"},
        "trace_id": "",
        "span_id": "",
    }
    fields.update(changes)
    return LogEntry(**fields)


@pytest.fixture(scope="module")
async def log_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_logging_schema(postgres_dsn)
    await upgrade_migration_schema(postgres_dsn)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=8)
    await LogPartitions(pool, RETENTION_DAYS).maintain()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    """One client for the module, as in a process; any Scan through it fails the test that issued it."""
    async with dynamodb_session().client("dynamodb", endpoint_url=dynamodb_endpoint) as client:
        client.meta.events.register("before-call.dynamodb.Scan", refuse_scan)
        yield client


@pytest.fixture(scope="module")
async def log_table(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    table = f"logs-test-{secrets.token_hex(4)}"
    await ensure_log_table(dynamodb, table, poll_seconds=0.05)
    try:
        yield table
    finally:
        await dynamodb.delete_table(TableName=table)
