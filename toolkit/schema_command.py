"""`loanbook schema upgrade|current`: every PostgreSQL schema of the system, applied or shown from one place."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from alembic.script import ScriptDirectory
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

import migration.schema
import services.customer.schema
import services.logging.schema
import services.payment.schema
from chassis import schema_migrations
from chassis.config import ConfigurationError, load_settings
from toolkit.config import ToolkitSettings

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class SchemaName(StrEnum):
    CUSTOMER = "customer"
    PAYMENT = "payment"
    LOGGING = "logging"
    MIGRATION = "migration"


@dataclass(frozen=True)
class Schema:
    """One Alembic migrations folder and the PostgreSQL schema it owns."""

    name: SchemaName
    script_location: Path

    def head(self) -> str | None:
        config = schema_migrations.alembic_config(self.script_location, self.name.value, "")
        return ScriptDirectory.from_config(config).get_current_head()

    async def upgrade(self, dsn: str) -> None:
        await schema_migrations.upgrade_to_head(self.script_location, self.name.value, dsn)

    async def current(self, dsn: str) -> str | None:
        """The applied revision, None when the schema has none yet."""
        connection = await asyncpg.connect(dsn)
        try:
            table = await connection.fetchval("SELECT to_regclass($1)::text", f'"{self.name.value}".alembic_version')
            if table is None:
                return None
            revision: str | None = await connection.fetchval(f"SELECT version_num FROM {table}")  # noqa: S608
            return revision
        finally:
            await connection.close()


# In the order the services' own start-ups apply them; no schema refers to another's tables.
SCHEMAS = (
    Schema(SchemaName.CUSTOMER, services.customer.schema.HERE),
    Schema(SchemaName.PAYMENT, services.payment.schema.HERE),
    Schema(SchemaName.LOGGING, services.logging.schema.HERE),
    Schema(SchemaName.MIGRATION, migration.schema.HERE),
)

schema = typer.Typer(
    help="Apply or show the PostgreSQL schemas (customer, payment, logging, migration), e.g. from a deploy job.",
    no_args_is_help=True,
)

PostgresDsn = Annotated[
    str | None,
    typer.Option(help="PostgreSQL the services use (env LOANBOOK_MIGRATION_POSTGRES_DSN)", show_default=False),
]
Only = Annotated[
    list[SchemaName] | None,
    typer.Option("--only", help="only this schema (repeat for several; default: all)", show_default=False),
]


def _dsn(postgres_dsn: str | None) -> str:
    given = {"postgres_dsn": postgres_dsn} if postgres_dsn else {}
    try:
        return load_settings(ToolkitSettings, **given).postgres_dsn.get_secret_value()
    except ConfigurationError as error:
        err.print(f"loanbook schema: {error}", markup=False)
        raise typer.Exit(2) from None


def _selected(only: list[SchemaName] | None) -> list[Schema]:
    return [item for item in SCHEMAS if not only or item.name in only]


def _unreachable(item: Schema, error: Exception) -> typer.Exit:
    # The error's text, never the DSN: it carries the password.
    err.print(f"schema {item.name.value}: {type(error).__name__}: {error}", markup=False)
    return typer.Exit(2)


@schema.command("upgrade")
def upgrade(postgres_dsn: PostgresDsn = None, only: Only = None) -> None:
    """Apply every pending migration of each schema; safe beside running services (they take the same lock)."""
    dsn = _dsn(postgres_dsn)
    for item in _selected(only):
        try:
            before = asyncio.run(item.current(dsn))
            asyncio.run(item.upgrade(dsn))
            after = asyncio.run(item.current(dsn))
        except (OSError, asyncpg.PostgresError, SQLAlchemyError) as error:
            raise _unreachable(item, error) from None
        change = "at head" if before == after else f"upgraded from {before or 'nothing'}"
        out.print(f"{item.name.value:<10} {after} ({change})", markup=False)


@schema.command("current")
def current(postgres_dsn: PostgresDsn = None, only: Only = None) -> None:
    """Each schema's applied revision beside the newest; exit code 1 when any is behind."""
    dsn = _dsn(postgres_dsn)
    behind = False
    for item in _selected(only):
        try:
            applied = asyncio.run(item.current(dsn))
        except (OSError, asyncpg.PostgresError) as error:
            raise _unreachable(item, error) from None
        head = item.head()
        state = "at head" if applied == head else f"behind head {head}"
        behind |= applied != head
        out.print(f"{item.name.value:<10} {applied or 'nothing'} ({state})", markup=False)
    if behind:
        raise typer.Exit(1)
