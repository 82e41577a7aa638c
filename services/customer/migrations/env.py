"""Alembic environment: runs migrations over asyncpg, one replica at a time, version table in our schema."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.customer.migrations import SCHEMA

# Any constant works; it only has to be the same for every replica of this service.
ADVISORY_LOCK_KEY = 0x6C6F616E_0001


def _run(connection: Connection) -> None:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    context.configure(connection=connection, version_table_schema=SCHEMA, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = make_url(context.config.attributes["dsn"]).set(drivername="postgresql+asyncpg")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_run_async())
