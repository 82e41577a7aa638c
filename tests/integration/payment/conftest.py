"""Hybrid payment stores built as the service builds them, on real PostgreSQL and DynamoDB Local."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import pytest

from migration.schema import upgrade_to_head as upgrade_migration_schema
from services.payment.schema import upgrade_to_head as upgrade_payment_schema
from tests.support.dynamodb import OwnDynamo
from tests.support.payment_harness import Harness, build_payment_harness

if TYPE_CHECKING:
    pass


@pytest.fixture(scope="module")
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_payment_schema(postgres_dsn)
    await upgrade_migration_schema(postgres_dsn)
    async with asyncpg.create_pool(postgres_dsn, min_size=2, max_size=12) as pool:
        yield pool


@pytest.fixture
async def harness(postgres_dsn: str, pool: asyncpg.Pool, dynamodb_endpoint: str) -> AsyncIterator[Harness]:
    async for value in build_payment_harness(postgres_dsn, pool, dynamodb_endpoint):
        yield value


@pytest.fixture
async def outage_harness(
    postgres_dsn: str, pool: asyncpg.Pool, own_dynamo: OwnDynamo
) -> AsyncIterator[tuple[Harness, OwnDynamo]]:
    async for value in build_payment_harness(postgres_dsn, pool, own_dynamo.server.endpoint):
        try:
            yield value, own_dynamo
        finally:
            own_dynamo.thaw()
