"""Alembic environment of the logging schema (the shared runner in chassis.schema_migrations)."""

from chassis.schema_migrations import run_migrations_online

run_migrations_online()
