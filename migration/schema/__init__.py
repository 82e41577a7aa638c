"""Schema `migration`: table modes, their audit trail, the write journal, verifications, shadow mismatches."""

from __future__ import annotations

from pathlib import Path

from chassis import schema_migrations

SCHEMA = "migration"
HERE = Path(__file__).resolve().parent


async def upgrade_to_head(dsn: str) -> None:
    await schema_migrations.upgrade_to_head(HERE, SCHEMA, dsn)
