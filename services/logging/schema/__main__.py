"""Logging schema migrations: upgrade [REV] | downgrade REV | current | history (LOANBOOK_LOGGING_POSTGRES_DSN)."""

import sys

from chassis.schema_migrations import command_line
from services.logging.schema import HERE, SCHEMA

if __name__ == "__main__":
    sys.exit(command_line(HERE, SCHEMA, "LOANBOOK_LOGGING_POSTGRES_DSN", sys.argv[1:]))
