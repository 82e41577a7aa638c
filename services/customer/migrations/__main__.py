"""Runs customer migrations: upgrade [REV] | downgrade REV | current | history (LOANBOOK_CUSTOMER_POSTGRES_DSN)."""

from __future__ import annotations

import os
import sys

from alembic import command

from services.customer.migrations import alembic_config


def main(argv: list[str]) -> int:
    dsn = os.environ.get("LOANBOOK_CUSTOMER_POSTGRES_DSN")
    if not dsn:
        print("set LOANBOOK_CUSTOMER_POSTGRES_DSN", file=sys.stderr)
        return 2
    config = alembic_config(dsn)
    match argv:
        case ["upgrade", *rest]:
            command.upgrade(config, rest[0] if rest else "head")
        case ["downgrade", revision]:
            command.downgrade(config, revision)
        case ["current"]:
            command.current(config, verbose=True)
        case ["history"]:
            command.history(config)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
