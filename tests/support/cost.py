"""Round prices for hand-computed cost tests, as a prices file of the shipped schema."""

from __future__ import annotations

from typing import Any

from toolkit.cost.prices import Prices


def price(usd: float, per: int, unit: str, confirmed: bool = True) -> dict[str, Any]:
    return {
        "usd": usd,
        "per": per,
        "unit": unit,
        "source": "test",
        "read_on": "2026-12-01",
        "confirmed": confirmed,
        "provenance": "round test figures",
    }


def table_class(write: float, read: float, wcu: float, rcu: float, storage: float) -> dict[str, Any]:
    return {
        "on_demand_write_request_units": price(write, 1_000_000, "write request unit"),
        "on_demand_read_request_units": price(read, 1_000_000, "read request unit"),
        "provisioned_write_capacity_unit_hours": price(wcu, 1, "write capacity unit-hour"),
        "provisioned_read_capacity_unit_hours": price(rcu, 1, "read capacity unit-hour"),
        "storage_gb_months": price(storage, 1, "GB-month"),
    }


def round_prices_document() -> dict[str, Any]:
    """$1 per million writes, $0.20 per million reads, $0.25 a GB-month (Standard-IA: a quarter dearer requests,
    $0.10 storage), PITR $0.20, backups $0.10 a GB-month, streams $0.02 per 100,000."""
    return {
        "schema_version": 1,
        "region": "test-1",
        "currency": "USD",
        "free_tier": {"included": False, "note": "left out"},
        "table_classes": {
            "standard": table_class(1.0, 0.2, 0.001, 0.0002, 0.25),
            "standard_ia": table_class(1.25, 0.25, 0.00125, 0.00025, 0.10),
        },
        "features": {
            "pitr_gb_months": price(0.20, 1, "GB-month"),
            "on_demand_backup_gb_months": price(0.10, 1, "GB-month"),
            "streams_read_request_units": price(0.02, 100_000, "streams read request unit", confirmed=False),
        },
    }


def round_prices() -> Prices:
    return Prices.model_validate(round_prices_document())
