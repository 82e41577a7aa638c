"""Alembic environment of the logging schema (the shared runner in chassis.migrations)."""

from chassis.migrations import run_migrations_online

run_migrations_online()
