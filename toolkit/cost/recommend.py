"""Changes the model finds cheaper for a workload, each with the monthly saving it computes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from toolkit.cost.model import (
    Mode,
    TableWorkload,
    Workload,
    table_cost,
    ttl_deletes_by_hand,
)
from toolkit.cost.prices import Prices

# Savings below this (USD a month) are not worth a recommendation.
MIN_SAVING: Final = 0.01


@dataclass(frozen=True)
class Recommendation:
    kind: str  # standard_ia | narrow_index | provisioned | ttl
    table: str
    saving_usd_month: float
    text: str


def _standard_ia(table: TableWorkload, workload: Workload, prices: Prices, mode: Mode) -> Recommendation | None:
    if table.table_class != "standard":
        return None
    now = table_cost(table, prices, workload.capacity)
    other = table_cost(table, prices, workload.capacity, table_class="standard_ia")
    saving = now.total(mode) - other.total(mode)
    if saving < MIN_SAVING:
        return None
    return Recommendation(
        "standard_ia",
        table.name,
        saving,
        f"{table.name}: storage is {now.storage_share(mode):.0%} of its cost; the Standard-IA table class "
        f"(dearer requests, cheaper storage) saves ${saving:,.2f}/month",
    )


def _narrow_indexes(table: TableWorkload, workload: Workload, prices: Prices, mode: Mode) -> list[Recommendation]:
    found = []
    now = table_cost(table, prices, workload.capacity).total(mode)
    for index in table.indexes:
        if index.narrowed_bytes is None or index.narrowed_bytes >= index.entry_bytes:
            continue
        narrowed = table_cost(table, prices, workload.capacity, index_bytes={index.name: index.narrowed_bytes})
        saving = now - narrowed.total(mode)
        if saving >= MIN_SAVING:
            found.append(
                Recommendation(
                    "narrow_index",
                    table.name,
                    saving,
                    f"{table.name}.{index.name}: projecting {index.narrowed_projection or 'what its reads use'} "
                    f"instead of {index.projection} makes entries {index.narrowed_bytes:,.0f} bytes instead of "
                    f"{index.entry_bytes:,.0f}; saves ${saving:,.2f}/month",
                )
            )
    return found


def _provisioned(table: TableWorkload, workload: Workload, prices: Prices) -> Recommendation | None:
    cost = table_cost(table, prices, workload.capacity)
    on_demand, provisioned = cost.total("on_demand"), cost.total("provisioned")
    saving = on_demand - provisioned
    if saving < MIN_SAVING:
        return None
    target = workload.capacity.target_utilisation
    return Recommendation(
        "provisioned",
        table.name,
        saving,
        f"{table.name}: provisioned capacity with auto scaling at {target:.0%} utilisation (capacity "
        f"{workload.capacity.peak_to_average:g}x the average load) costs ${provisioned:,.2f}/month against "
        f"${on_demand:,.2f} on demand; saves ${saving:,.2f}/month while utilisation stays at or above {target:.0%}",
    )


def _ttl(table: TableWorkload, prices: Prices) -> Recommendation | None:
    by_hand = ttl_deletes_by_hand(table, prices)
    if table.ttl_days is None or by_hand < MIN_SAVING:
        return None
    return Recommendation(
        "ttl",
        table.name,
        by_hand,
        f"{table.name}: TTL deletes {table.items_per_day:,.0f} expired items a day without write units; deleting "
        f"them by hand would cost ${by_hand:,.2f}/month",
    )


def recommendations(workload: Workload, prices: Prices, mode: Mode = "on_demand") -> list[Recommendation]:
    """What applies to each table, largest saving first; capacity-mode advice is judged against on-demand."""
    found: list[Recommendation] = []
    for table in workload.tables:
        found += [r for r in (_standard_ia(table, workload, prices, mode), _provisioned(table, workload, prices)) if r]
        found += _narrow_indexes(table, workload, prices, mode)
        ttl = _ttl(table, prices)
        if ttl:
            found.append(ttl)
    return sorted(found, key=lambda r: r.saving_usd_month, reverse=True)
