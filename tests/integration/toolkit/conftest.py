"""Fixtures of the migration toolkit's tests: the stores, emptied, with fresh DynamoDB tables per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiobotocore.config import AioConfig

from services.logging.adapters.dynamodb import ensure_log_table
from services.payment.adapters.dynamodb import ensure_payment_table
from tests.support.dynamodb import delete_table_if_present, local_session
from tests.support.toolkit import Stores, prepare_postgres


@pytest.fixture
async def stores(postgres_dsn: str, dynamodb_endpoint: str) -> AsyncIterator[Stores]:
    await prepare_postgres(postgres_dsn)
    pool = await asyncpg.create_pool(postgres_dsn, min_size=2, max_size=30)
    config = AioConfig(max_pool_connections=64)
    try:
        async with local_session().client("dynamodb", endpoint_url=dynamodb_endpoint, config=config) as client:
            prefix = f"toolkit-{secrets.token_hex(4)}"
            tables = [f"{prefix}-payments", f"{prefix}-logs"]
            try:
                await ensure_payment_table(client, tables[0])
                await ensure_log_table(client, tables[1])
                yield Stores(postgres_dsn, pool, client, dynamodb_endpoint, prefix)
            finally:
                # The log table has TTL: see tests/integration/conftest.py for why none may outlive its test.
                for table in tables:
                    await delete_table_if_present(client, table)
    finally:
        await pool.close()


@pytest.fixture
async def second_pool(stores: Stores) -> AsyncIterator[asyncpg.Pool]:
    """Another process's connections to the same PostgreSQL (for runs shared by several processes)."""
    pool = await asyncpg.create_pool(stores.dsn, min_size=1, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()
