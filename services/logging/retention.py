"""Applies log retention now: `python -m services.logging.retention` (LOANBOOK_LOGGING_* settings).

Drops the daily PostgreSQL partitions older than LOANBOOK_LOGGING_RETENTION_DAYS and creates the ones the
window and the next days need. The service does the same at start-up and hourly; this is for operators (and
cron) who want it now. DynamoDB needs nothing: its TTL expires items by `expires_at`.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from chassis.config import ConfigurationError, load_settings
from services.logging.adapters.postgres import LogPartitions
from services.logging.config import LoggingSettings


async def apply_retention(settings: LoggingSettings) -> int:
    pool = await asyncpg.create_pool(settings.postgres_dsn.get_secret_value(), min_size=1, max_size=1)
    try:
        created, dropped = await LogPartitions(pool, settings.retention_days).maintain()
    finally:
        await pool.close()
    print(
        f"retention {settings.retention_days} days: dropped {len(dropped)} partition(s)"
        f"{' (' + ', '.join(map(str, dropped)) + ')' if dropped else ''}, created {len(created)}"
    )
    return 0


def main() -> int:
    try:
        settings = load_settings(LoggingSettings)
    except ConfigurationError as error:
        print(f"loanbook-logging retention: {error}", file=sys.stderr)
        return 2
    return asyncio.run(apply_retention(settings))


if __name__ == "__main__":
    sys.exit(main())
