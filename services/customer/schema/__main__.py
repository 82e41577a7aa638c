"""Customer schema migrations: upgrade [REV] | downgrade REV | current | history (LOANBOOK_CUSTOMER_POSTGRES_DSN)."""

import sys

from chassis.schema_migrations import command_line
from services.customer.schema import HERE, SCHEMA

if __name__ == "__main__":
    sys.exit(command_line(HERE, SCHEMA, "LOANBOOK_CUSTOMER_POSTGRES_DSN", sys.argv[1:]))
