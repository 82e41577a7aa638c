"""`loanbook cost`: what the migration saves, measured from the live system or from a scenario file."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from chassis.stores import StoreUnavailable, dynamodb_client, postgres_pool
from migration.control import check_table
from migration.stages import TABLES
from toolkit.cost.inputs import (
    OPERATIONS,
    CallShape,
    InputError,
    LiveFacts,
    LiveOptions,
    PrometheusUnavailable,
    Scenario,
    live_workload,
    load_scenario,
    request_mix_from_prometheus,
)
from toolkit.cost.model import MODES, Capacity, Estimate, Postgres, PostgresCost, Workload, estimate
from toolkit.cost.prices import Prices, PricesError, load_prices, region_prices, validation_problems
from toolkit.cost.recommend import Recommendation, recommendations
from toolkit.migrate_commands import DynamoEndpoint, PostgresDsn, Region, TablePrefix, settings_or_exit
from toolkit.specs import table_specs

JSON_SCHEMA_VERSION: Final = 1
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

Money = Annotated[float | None, typer.Option(min=0, show_default=False)]
PerDay = Annotated[float | None, typer.Option(min=0, show_default=False)]


def _fail(option: str, reason: str) -> typer.Exit:
    err.print(f"error: {option}: {reason}", markup=False)
    return typer.Exit(2)


def _table_list(value: str, option: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if name not in TABLES:
            raise _fail(option, f"{name!r} is not a migrated table ({', '.join(TABLES)})")
    return names


def _backups(value: str) -> dict[str, int]:
    found = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        table, _, count = part.partition("=")
        if table not in TABLES or not count.isdigit():
            raise _fail("--backups", f"{part!r} is not TABLE=COUNT (tables: {', '.join(TABLES)})")
        found[table] = int(count)
    return found


def _prices(prices_file: Path | None, region: str) -> Prices:
    try:
        return load_prices(prices_file) if prices_file is not None else region_prices(region)
    except PricesError as error:
        raise _fail("--prices" if prices_file is not None else "--region", str(error)) from None


def cost_command(
    tables: Annotated[
        list[str] | None, typer.Argument(help="payments, logs (default: both)", show_default=False)
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="run the model on a workload file, without the live system", show_default=False)
    ] = None,
    prices_file: Annotated[
        Path | None,
        typer.Option(
            "--prices", help="prices file of your own (schema of toolkit/cost/prices/*.json)", show_default=False
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON document (see docs/cost.md)")] = False,
    month: Annotated[int, typer.Option(min=1, max=120, help="the month to show, 1 = the coming month")] = 1,
    target_utilisation: Annotated[
        float | None, typer.Option(min=0.2, max=0.9, help="provisioned: auto scaling's target [default: 0.7]")
    ] = None,
    peak_to_average: Annotated[
        float | None, typer.Option(min=1, help="provisioned: capacity held over the average load [default: 1.5]")
    ] = None,
    pg_instance_monthly: Money = None,
    pg_storage_monthly: Money = None,
    pg_iops_monthly: Money = None,
    pg_after_instance_monthly: Money = None,
    pg_after_storage_monthly: Money = None,
    pg_after_iops_monthly: Money = None,
    other_one_off: Annotated[float, typer.Option(min=0, help="one-off cost besides DynamoDB's (e.g. work), USD")] = 0.0,
    payments_per_day: PerDay = None,
    payment_updates_per_day: PerDay = None,
    payment_gets_per_day: PerDay = None,
    idempotency_lookups_per_day: PerDay = None,
    history_reads_per_day: PerDay = None,
    loan_reads_per_day: PerDay = None,
    log_entries_per_day: PerDay = None,
    log_queries_per_day: PerDay = None,
    trace_reads_per_day: PerDay = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            envvar="LOANBOOK_MIGRATION_PROMETHEUS_URL", help="Prometheus: the request mix", show_default=False
        ),
    ] = None,
    prometheus_window: Annotated[str, typer.Option(help="rate window of the request mix (PromQL duration)")] = "1d",
    growth_window_days: Annotated[int, typer.Option(min=1, max=3650, help="growth per day over this many days")] = 30,
    sample: Annotated[int, typer.Option(min=10, max=1000, help="items sampled per table for their sizes")] = 200,
    pitr: Annotated[str, typer.Option(help="tables with point-in-time recovery (comma-separated)")] = "payments",
    backups: Annotated[str, typer.Option(help="on-demand backups retained, TABLE=COUNT,...")] = "",
    streams: Annotated[str, typer.Option(help="tables with DynamoDB Streams on (comma-separated)")] = "",
    dsn: PostgresDsn = None,
    endpoint: DynamoEndpoint = None,
    region: Region = None,
    prefix: TablePrefix = None,
) -> None:
    """What moving payments and logs to DynamoDB costs and saves a month, per table and component, on demand and
    provisioned; the backfill's one-off cost, the break-even month, and what would cost less.

    Measured from the live system (PostgreSQL rows and sizes, sampled items, Prometheus), or with --scenario from a
    workload file. The PostgreSQL bill is not priced from data: give it with --pg-* options."""
    names = [check_table(name) for name in tables] if tables else list(TABLES)
    capacity_given = {
        key: value
        for key, value in (("target_utilisation", target_utilisation), ("peak_to_average", peak_to_average))
        if value is not None
    }
    notes: list[str] = []
    claim: dict[str, Any] = {}
    assumptions: tuple[str, ...] = ()
    facts: LiveFacts | None = None
    if scenario is not None:
        loaded = _scenario(scenario)
        workload = loaded.workload
        if capacity_given:
            workload = workload.model_copy(update={"capacity": workload.capacity.model_copy(update=capacity_given)})
        if tables:
            workload = workload.model_copy(update={"tables": tuple(t for t in workload.tables if t.name in names)})
        prices = _prices(prices_file, region or loaded.region)
        claim, assumptions = loaded.claim, loaded.assumptions
    else:
        settings = settings_or_exit(dsn, endpoint, region, prefix)
        prices = _prices(prices_file, settings.aws_region)
        postgres = _postgres_side(
            pg_instance_monthly,
            pg_storage_monthly,
            pg_iops_monthly,
            pg_after_instance_monthly,
            pg_after_storage_monthly,
            pg_after_iops_monthly,
        )
        given = {
            "payments": {
                "create": payments_per_day,
                "update": payment_updates_per_day,
                "get": payment_gets_per_day,
                "get_by_idempotency_key": idempotency_lookups_per_day,
                "list_for_customer": history_reads_per_day,
                "list_for_loan": loan_reads_per_day,
            },
            "logs": {"query": log_queries_per_day, "trace": trace_reads_per_day},
        }
        options = LiveOptions(
            tables=names,
            window=timedelta(days=growth_window_days),
            sample=sample,
            given_mix={t: {k: v for k, v in ops.items() if v is not None} for t, ops in given.items()},
            log_entries_per_day=log_entries_per_day,
            calls=CallShape(log_shards=settings.log_shards),
            log_retention_days=settings.log_retention_days,
            pitr=_table_list(pitr, "--pitr"),
            backups_retained=_backups(backups),
            streams=_table_list(streams, "--streams"),
        )
        try:
            capacity = Capacity(**capacity_given)
        except ValidationError as error:
            raise _fail("--target-utilisation/--peak-to-average", validation_problems(error)) from None

        async def gather() -> tuple[Workload, LiveFacts]:
            measured: dict[str, dict[str, float]] = {}
            if prometheus_url:
                try:
                    measured = await request_mix_from_prometheus(prometheus_url, prometheus_window)
                except PrometheusUnavailable as error:
                    notes.append(f"request mix: {error}; options and PostgreSQL's rows used instead")
            else:
                notes.append("request mix: no --prometheus-url; reads come from options only")
            specs = table_specs(names, settings.log_shards, settings.log_retention)
            async with postgres_pool(settings) as pool, dynamodb_client(settings) as client:
                return await live_workload(
                    pool, client, specs, settings.table_name, options, postgres, capacity, measured,
                    other_one_off_usd=other_one_off,
                )  # fmt: skip

        try:
            workload, facts = asyncio.run(gather())
        except InputError as error:
            raise _fail(error.option, error.reason) from None
        except StoreUnavailable as error:
            err.print(str(error), markup=False)
            raise typer.Exit(2) from None
        notes += facts.notes
    unconfirmed = prices.unconfirmed()
    if unconfirmed:
        notes.append(
            f"{len(unconfirmed)} prices in the {prices.region} file are not confirmed by an AWS-owned copy "
            f"(see their provenance): {', '.join(unconfirmed)}"
        )
    result = estimate(workload, prices, month)
    advice = recommendations(workload, prices)
    if json_output:
        document = to_json(result, workload, prices, advice, notes, facts, claim, assumptions)
        out.print(json.dumps(document, indent=2), markup=False)
        return
    _print(result, prices, advice, notes, facts, claim, assumptions)


def _scenario(path: Path) -> Scenario:
    try:
        return load_scenario(path)
    except InputError as error:
        raise _fail(error.option, error.reason) from None


def _postgres_side(*values: float | None) -> Postgres:
    names = (
        "--pg-instance-monthly",
        "--pg-storage-monthly",
        "--pg-iops-monthly",
        "--pg-after-instance-monthly",
        "--pg-after-storage-monthly",
        "--pg-after-iops-monthly",
    )
    for name, value in zip(names[:2] + names[3:5], values[:2] + values[3:5], strict=True):
        if value is None:
            raise _fail(name, "required without --scenario (the PostgreSQL bill is an input, not priced from data)")
    before = PostgresCost(instance_usd=values[0] or 0, storage_usd=values[1] or 0, iops_usd=values[2] or 0)
    after = PostgresCost(instance_usd=values[3] or 0, storage_usd=values[4] or 0, iops_usd=values[5] or 0)
    return Postgres(before=before, after=after)


# --- output ------------------------------------------------------------------------------------------------------


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _months(value: float | None) -> str:
    if value is None:
        return "not within 10 years"
    # A one-off of a few dollars against a monthly saving pays back within the first day: say so, not 1.7e-07.
    return "within the first month" if value < 0.01 else f"after {value:.3g} months"


def _print(
    result: Estimate,
    prices: Prices,
    advice: list[Recommendation],
    notes: list[str],
    facts: LiveFacts | None,
    claim: dict[str, Any],
    assumptions: tuple[str, ...],
) -> None:
    if facts is not None:
        measured = Table(title="Measured (PostgreSQL rows, sampled items)")
        for column in ("table", "rows", "rows/day", "PostgreSQL data", "PostgreSQL indexes", "item bytes", "sample"):
            measured.add_column(column, justify="left" if column == "table" else "right")
        for pg, shape in zip(facts.postgres, facts.shapes, strict=True):
            measured.add_row(
                pg.table,
                f"{pg.rows:,}",
                f"{pg.rows_per_day:,.1f}",
                f"{pg.table_bytes / 1e6:,.1f} MB",
                f"{pg.index_bytes / 1e6:,.1f} MB",
                f"{shape.item_bytes:,.0f}",
                f"{shape.sampled} from {shape.source}",
            )
        out.print(measured)
        mix = Table(title="Request mix (calls/day)")
        mix.add_column("table")
        mix.add_column("operation")
        mix.add_column("calls/day", justify="right")
        for name, operations in facts.mix.items():
            for operation in OPERATIONS[name]:
                mix.add_row(name, operation, f"{operations.get(operation, 0):,.1f}")
        out.print(mix)
    for table in result.tables:
        bill = Table(title=f"{table.name}: month {result.month}, {table.table_class}, {table.items:,.0f} items")
        for column in ("component", "on demand", "provisioned", "counted"):
            bill.add_column(column, justify="left" if column in ("component", "counted") else "right")
        for component in table.components:
            bill.add_row(component.name, _usd(component.on_demand), _usd(component.provisioned), component.units)
        bill.add_row("total", _usd(table.total("on_demand")), _usd(table.total("provisioned")), "", style="bold")
        out.print(bill)
    summary = Table(title=f"Monthly, {prices.region} (USD)")
    summary.add_column("")
    summary.add_column("on demand", justify="right")
    summary.add_column("provisioned", justify="right")
    summary.add_row("DynamoDB", *(_usd(result.dynamodb(mode)) for mode in MODES))
    summary.add_row("PostgreSQL before", _usd(result.postgres_before), _usd(result.postgres_before))
    summary.add_row("PostgreSQL after", _usd(result.postgres_after), _usd(result.postgres_after))
    summary.add_row("saving", *(_usd(result.saving(mode)) for mode in MODES), style="bold")
    for cost in result.backfill:
        summary.add_row(f"one-off: {cost.table} backfill + verify", _usd(cost.usd), _usd(cost.usd))
    summary.add_row("one-off: other", _usd(result.other_one_off), _usd(result.other_one_off))
    summary.add_row("break-even", *(_months(result.break_even_month[mode]) for mode in MODES), style="bold")
    out.print(summary)
    if claim:
        out.print("claimed: " + "; ".join(f"{key}: {value}" for key, value in claim.items()))
    if advice:
        out.print("[bold]recommendations[/]")
        for recommendation in advice:
            out.print(f"- {recommendation.text}", markup=False)
    else:
        out.print("recommendations: none apply")
    for assumption in assumptions:
        out.print(f"assumed: {assumption}", markup=False)
    for note in notes:
        err.print(f"note: {note}", markup=False)


def to_json(
    result: Estimate,
    workload: Workload,
    prices: Prices,
    advice: list[Recommendation],
    notes: list[str],
    facts: LiveFacts | None,
    claim: dict[str, Any],
    assumptions: tuple[str, ...],
) -> dict[str, Any]:
    """The `--json` document (its shape is documented in docs/cost.md; fields are only ever added)."""

    def money(value: float) -> float:
        return round(value, 4)

    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "region": prices.region,
        "currency": prices.currency,
        "month": result.month,
        "unconfirmed_prices": prices.unconfirmed(),
        "tables": [
            {
                "name": table.name,
                "table_class": table.table_class,
                "items": round(table.items),
                "storage_gb": round(table.storage_gb, 6),
                "components": [
                    {
                        "name": c.name,
                        "on_demand_usd": money(c.on_demand),
                        "provisioned_usd": money(c.provisioned),
                        "counted": c.units,
                    }
                    for c in table.components
                ],
                "total": {mode: money(table.total(mode)) for mode in MODES},
            }
            for table in result.tables
        ],
        "dynamodb": {mode: money(result.dynamodb(mode)) for mode in MODES},
        "postgres": {"before_usd": money(result.postgres_before), "after_usd": money(result.postgres_after)},
        "saving": {mode: money(result.saving(mode)) for mode in MODES},
        "one_off": {
            "backfill": [
                {"table": c.table, "write_units": c.write_units, "read_units": c.read_units, "usd": money(c.usd)}
                for c in result.backfill
            ],
            "other_usd": money(result.other_one_off),
            "total_usd": money(result.one_off),
        },
        "break_even_month": {
            mode: None if value is None else round(value, 2) for mode, value in result.break_even_month.items()
        },
        "recommendations": [
            {"kind": r.kind, "table": r.table, "saving_usd_month": money(r.saving_usd_month), "text": r.text}
            for r in advice
        ],
        "measured": None
        if facts is None
        else {
            "postgres": [
                {
                    "table": pg.table,
                    "rows": pg.rows,
                    "rows_per_day": pg.rows_per_day,
                    "updates_per_day": pg.updates_per_day,
                    "table_bytes": pg.table_bytes,
                    "index_bytes": pg.index_bytes,
                }
                for pg in facts.postgres
            ],
            "items": [
                {
                    "table": shape.table,
                    "sampled": shape.sampled,
                    "source": shape.source,
                    "bytes_by_kind": shape.bytes_by_kind,
                    "index_entry_bytes": shape.index_bytes,
                }
                for shape in facts.shapes
            ],
            "calls_per_day": facts.mix,
        },
        "claim": claim,
        "assumptions": list(assumptions),
        "notes": notes,
        "workload": workload.model_dump(mode="json"),
    }
