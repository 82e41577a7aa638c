"""Runs logging migrations: upgrade [REV] | downgrade REV | current | history (LOANBOOK_LOGGING_POSTGRES_DSN)."""

import sys

from chassis.migrations import command_line
from services.logging.migrations import HERE, SCHEMA

if __name__ == "__main__":
    sys.exit(command_line(HERE, SCHEMA, "LOANBOOK_LOGGING_POSTGRES_DSN", sys.argv[1:]))
