"""Versioned schema migrations of the logging service (Alembic, explicit SQL), applied to schema `logging`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from chassis import schema_migrations

SCHEMA = "logging"
HERE = Path(__file__).resolve().parent


def alembic_config(dsn: str) -> Config:
    return schema_migrations.alembic_config(HERE, SCHEMA, dsn)


async def upgrade_to_head(dsn: str) -> None:
    await schema_migrations.upgrade_to_head(HERE, SCHEMA, dsn)
