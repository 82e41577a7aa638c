"""Alembic over asyncpg for any service schema: explicit SQL migrations, one replica at a time."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: Path, schema: str, dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes.update(dsn=dsn, schema=schema)
    return config


async def upgrade_to_head(script_location: Path, schema: str, dsn: str) -> None:
    """Apply every pending migration; safe to call from several replicas at once (advisory lock)."""
    # Alembic's API is synchronous and runs its own event loop for the async engine: keep it off ours.
    await asyncio.to_thread(command.upgrade, alembic_config(script_location, schema, dsn), "head")


def execute_script(script: str) -> None:
    """Run a migration's SQL one statement at a time: asyncpg prepares each and refuses several at once.

    Statements end with a semicolon at the end of a line; migrations are written that way.
    """
    for statement in re.split(r";[ \t]*(?:\n|$)", script):
        if statement.strip():
            op.execute(statement)


def run_migrations_online() -> None:
    """The body of every migrations package's env.py."""
    schema: str = context.config.attributes["schema"]
    # One lock per schema, the same on every replica: concurrent start-ups apply migrations once.
    lock_key = int.from_bytes(hashlib.sha256(f"loanbook-migrations:{schema}".encode()).digest()[:7], "big")

    def run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        context.configure(connection=connection, version_table_schema=schema, transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        url = make_url(context.config.attributes["dsn"]).set(drivername="postgresql+asyncpg")
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(run_async())


def command_line(script_location: Path, schema: str, dsn_variable: str, argv: list[str]) -> int:
    """`upgrade [REV] | downgrade REV | current | history` for one schema, the DSN taken from `dsn_variable`."""
    dsn = os.environ.get(dsn_variable)
    if not dsn:
        print(f"set {dsn_variable}", file=sys.stderr)
        return 2
    config = alembic_config(script_location, schema, dsn)
    match argv:
        case ["upgrade", *rest]:
            command.upgrade(config, rest[0] if rest else "head")
        case ["downgrade", revision]:
            command.downgrade(config, revision)
        case ["current"]:
            command.current(config, verbose=True)
        case ["history"]:
            command.history(config)
        case _:
            print(
                f"usage: upgrade [REV] | downgrade REV | current | history  ({dsn_variable} names the database)",
                file=sys.stderr,
            )
            return 2
    return 0
