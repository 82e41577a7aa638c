"""Imports every command module so that its commands are registered on `migration.toolkit.app`."""

from __future__ import annotations

from migration.toolkit import migrate_commands, seed_command  # noqa: F401
