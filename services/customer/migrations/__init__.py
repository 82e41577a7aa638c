"""Versioned schema migrations of the customer service (Alembic, explicit SQL), applied to schema `customer`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from alembic import command, op
from alembic.config import Config

SCHEMA = "customer"
HERE = Path(__file__).resolve().parent


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["dsn"] = dsn
    return config


async def upgrade_to_head(dsn: str) -> None:
    """Apply every pending migration; safe to call from several replicas at once (advisory lock)."""
    # Alembic's API is synchronous and runs its own event loop for the async engine: keep it off ours.
    await asyncio.to_thread(command.upgrade, alembic_config(dsn), "head")


def execute_script(script: str) -> None:
    """Run a migration's SQL one statement at a time: asyncpg prepares each and refuses several at once.

    Statements end with a semicolon at the end of a line; migrations are written that way.
    """
    for statement in re.split(r";[ \t]*(?:\n|$)", script):
        if statement.strip():
            op.execute(statement)
