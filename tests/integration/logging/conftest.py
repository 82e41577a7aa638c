"""Log stores on real PostgreSQL and DynamoDB Local, built as the logging service builds them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest

from migration.schema import upgrade_to_head as upgrade_migration_schema
from services.logging.adapters.dynamodb import ensure_log_table
from services.logging.adapters.postgres import LogPartitions
from services.logging.schema import upgrade_to_head as upgrade_logging_schema
from tests.support.dynamodb import OwnDynamo, scan_refusing_client
from tests.support.log_harness import LogHarness, build_log_harness
from tests.support.logs import RETENTION_DAYS

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient


@pytest.fixture(scope="module")
async def log_pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_logging_schema(postgres_dsn)
    await upgrade_migration_schema(postgres_dsn)
    async with asyncpg.create_pool(postgres_dsn, min_size=2, max_size=8) as pool:
        await LogPartitions(pool, RETENTION_DAYS).maintain()
        yield pool


@pytest.fixture(scope="module")
async def dynamodb(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    """One client for the module, as in a process; any Scan through it fails the test that issued it."""
    async with scan_refusing_client(dynamodb_endpoint) as client:
        yield client


@pytest.fixture(scope="module")
async def log_table(dynamodb: DynamoDBClient) -> AsyncIterator[str]:
    table = f"logs-test-{secrets.token_hex(4)}"
    await ensure_log_table(dynamodb, table, poll_seconds=0.05)
    try:
        yield table
    finally:
        await dynamodb.delete_table(TableName=table)


@pytest.fixture
async def log_harness(postgres_dsn: str, log_pool: asyncpg.Pool, dynamodb_endpoint: str) -> AsyncIterator[LogHarness]:
    async for harness in build_log_harness(postgres_dsn, log_pool, dynamodb_endpoint):
        yield harness


@pytest.fixture
async def log_outage_harness(
    postgres_dsn: str, log_pool: asyncpg.Pool, own_dynamo: OwnDynamo
) -> AsyncIterator[tuple[LogHarness, OwnDynamo]]:
    async for harness in build_log_harness(postgres_dsn, log_pool, own_dynamo.server.endpoint):
        try:
            yield harness, own_dynamo
        finally:
            own_dynamo.thaw()
