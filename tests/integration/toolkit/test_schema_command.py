"""`loanbook schema upgrade|current` against a real PostgreSQL: every schema to head, one brought back, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from alembic import command
from typer.testing import CliRunner

from chassis import schema_migrations
from migration.schema import HERE as MIGRATION_SCHEMA
from toolkit.cli import app
from toolkit.schema_command import SCHEMAS

runner = CliRunner()
ALL = [schema.name.value for schema in SCHEMAS]


def applied(dsn: str, schema: str) -> str | None:
    async def read() -> str | None:
        connection = await asyncpg.connect(dsn)
        try:
            revision: str | None = await connection.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')  # noqa: S608
            return revision
        finally:
            await connection.close()

    return asyncio.run(read())


@pytest.fixture
def dsn_in_env(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("LOANBOOK_SECRETS_DIR", raising=False)
    monkeypatch.setenv("LOANBOOK_MIGRATION_POSTGRES_DSN", postgres_dsn)
    return postgres_dsn


def test_upgrade_brings_every_schema_to_head_and_current_says_so(dsn_in_env: str) -> None:
    upgraded = runner.invoke(app, ["schema", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert [line.split()[0] for line in upgraded.stdout.splitlines()] == ALL

    current = runner.invoke(app, ["schema", "current"])
    assert current.exit_code == 0, current.output
    for schema in SCHEMAS:
        assert f"{schema.name.value:<10} {schema.head()} (at head)" in current.stdout
        assert applied(dsn_in_env, schema.name.value) == schema.head()


def test_a_schema_behind_head_is_reported_and_upgraded_alone(dsn_in_env: str) -> None:
    assert runner.invoke(app, ["schema", "upgrade", "--only", "migration"]).exit_code == 0
    head = applied(dsn_in_env, "migration")
    [migration_schema] = [schema for schema in SCHEMAS if schema.name.value == "migration"]
    assert head is not None
    assert head == migration_schema.head()
    previous = f"{int(head) - 1:04d}"  # revisions are numbered 0001, 0002, ...
    config = schema_migrations.alembic_config(MIGRATION_SCHEMA, "migration", dsn_in_env)
    try:
        command.downgrade(config, previous)

        current = runner.invoke(app, ["schema", "current", "--only", "migration"])
        assert current.exit_code == 1
        assert current.stdout.strip() == f"migration  {previous} (behind head {head})"

        upgraded = runner.invoke(app, ["schema", "upgrade", "--only", "migration", "--only", "customer"])
        assert upgraded.exit_code == 0, upgraded.output
        assert f"migration  {head} (upgraded from {previous})" in upgraded.stdout
        assert "customer   0001 (at head)" in upgraded.stdout
        assert "payment" not in upgraded.stdout
    finally:
        command.upgrade(config, "head")  # whatever happened, later tests find the schema at head
    assert applied(dsn_in_env, "migration") == head


def test_the_dsn_can_come_from_a_secret_file(
    postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOANBOOK_MIGRATION_POSTGRES_DSN", raising=False)
    (tmp_path / "LOANBOOK_MIGRATION_POSTGRES_DSN").write_text(postgres_dsn + "\n")
    monkeypatch.setenv("LOANBOOK_SECRETS_DIR", str(tmp_path))

    result = runner.invoke(app, ["schema", "current"])

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(SCHEMAS)


def test_without_a_dsn_the_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOANBOOK_MIGRATION_POSTGRES_DSN", raising=False)
    monkeypatch.delenv("LOANBOOK_SECRETS_DIR", raising=False)

    result = runner.invoke(app, ["schema", "upgrade"])

    assert result.exit_code == 2
    assert "LOANBOOK_MIGRATION_POSTGRES_DSN: Field required" in result.stderr


def test_an_unreachable_database_exits_2_without_echoing_the_password(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOANBOOK_SECRETS_DIR", raising=False)
    parts = urlsplit(postgres_dsn)
    # Port 1 on the same host: refused at once.
    unreachable = parts._replace(netloc=f"loanbook:hunter2-{parts.port}@{parts.hostname}:1").geturl()

    result = runner.invoke(app, ["schema", "upgrade", "--postgres-dsn", unreachable])

    assert result.exit_code == 2
    assert result.stderr.startswith("schema customer: ")
    assert "hunter2" not in result.output


def test_an_unknown_schema_is_refused() -> None:
    result = runner.invoke(app, ["schema", "upgrade", "--only", "loans"])

    assert result.exit_code == 2
    assert "'loans' is not one of" in result.output
