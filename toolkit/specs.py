"""The migrated tables the toolkit works on, each as its own service declares it (services/*/table_spec.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from migration.table_spec import TableSpec
from services.logging.adapters.dynamodb import LogTableLayout
from services.logging.table_spec import LogSpec
from services.payment.table_spec import PaymentSpec


def table_specs(tables: Sequence[str], log_shards: int, log_retention: timedelta) -> list[TableSpec]:
    """The specs of the named tables, in the order given."""
    known: dict[str, TableSpec] = {
        "payments": PaymentSpec(),
        "logs": LogSpec(LogTableLayout(shards=log_shards, retention=log_retention)),
    }
    return [known[table] for table in tables]
