"""`loanbook migrate promote`: walk a table's stages on evidence, with a live view of every guard against its limit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table as RichTable

from chassis.errors import InvalidArgument
from migration.control import check_table, parse_stage
from migration.stages import Stage
from toolkit.backfill import BackfillOptions
from toolkit.guards import GuardLimits, GuardReading
from toolkit.migrate_commands import (
    DEFAULT_READ_RATE,
    DynamoEndpoint,
    PostgresDsn,
    PrometheusUrl,
    Region,
    TablePrefix,
    Who,
    _pacing,
    _run_or_exit_1,
    _specs,
    _stores,
    _who,
    err,
    out,
    settings_or_exit,
)
from toolkit.promotion import WATCHDOG_COOL_DOWN, PlanHold, Promoter, PromotionOptions
from toolkit.promotion_plan import load_plan
from toolkit.verify import VerifyOptions

# The defaults of the guard options: one source, toolkit.guards.GuardLimits (whose comments give the reasons).
LIMITS = GuardLimits()


class LiveGuards:
    """The guards of the stage being held, refreshed in place on a terminal (stderr); decisions go to stdout."""

    def __init__(self) -> None:
        self.live = Live(console=err, auto_refresh=False, transient=False)
        self._grids: dict[str, RichTable] = {}  # by table: a plan promotes several side by side

    def watching(self, table: str, stage: Stage, held: float, window: float, readings: Sequence[GuardReading]) -> None:
        grid = RichTable(
            title=f"{table}: {stage.value}, held {min(held, window):.0f} / {window:g} s", title_justify="left"
        )
        for column in ("guard", "value", "limit", "state", "evidence"):
            grid.add_column(column)
        for r in readings:
            state = {True: "[green]holds[/green]", False: "[red]breached[/red]", None: "[yellow]no data[/yellow]"}
            value = "-" if r.value is None else f"{r.value:.4g}"
            grid.add_row(r.guard, value, f"{r.limit:g}", state[r.holds], r.evidence)
        self._grids[table] = grid
        self.live.update(Group(*self._grids.values()), refresh=True)

    def decided(self, table: str, stage: Stage, decision: str, detail: str) -> None:
        out.print(f"{table}: {decision}: {detail}", markup=False)


def _exit_invalid(what: str, error: InvalidArgument) -> NoReturn:
    problems = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    err.print(f"invalid {what}: {problems}", markup=False)
    raise typer.Exit(2)


def promote(
    table: Annotated[str | None, typer.Argument(help="payments or logs (or --plan)", show_default=False)] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="a TOML plan promoting several tables, each with its own target and guards", dir_okay=False),
    ] = None,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="the stage to reach (dynamo_only only when asked: PostgreSQL stops receiving writes)"
        ),
    ] = Stage.DYNAMO_PRIMARY.value,
    window: Annotated[float, typer.Option(min=1, help="seconds each stage is held with every guard holding")] = 300.0,
    poll: Annotated[float, typer.Option(min=0.2, help="seconds between two readings of the guards")] = 5.0,
    evidence_timeout: Annotated[
        float, typer.Option(min=0, help="seconds past the window to wait for evidence a guard lacks (quiet tables)")
    ] = 1800.0,
    max_mismatch_ratio: Annotated[
        float, typer.Option(min=0, max=1, help="shadow mismatches / comparisons")
    ] = LIMITS.max_mismatch_ratio,
    min_comparisons: Annotated[
        int, typer.Option(min=1, help="shadow comparisons needed in the window")
    ] = LIMITS.min_comparisons,
    max_fallback_ratio: Annotated[
        float, typer.Option(min=0, max=1, help="fallback reads / store calls")
    ] = LIMITS.max_fallback_ratio,
    max_error_ratio: Annotated[
        float, typer.Option(min=0, max=1, help="failed store calls / store calls")
    ] = LIMITS.max_error_ratio,
    max_latency_ratio: Annotated[
        float, typer.Option(min=1, help="DynamoDB p99 / PostgreSQL p99")
    ] = LIMITS.max_latency_ratio,
    min_calls: Annotated[
        int, typer.Option(min=1, help="successful calls per backend behind a p99")
    ] = LIMITS.min_calls_per_backend,
    max_journal_age: Annotated[
        float, typer.Option(min=0, help="seconds the oldest journal entry may wait")
    ] = LIMITS.max_journal_age_seconds,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", min=0, help="DynamoDB items read per second by verifications (0: none)")
    ] = DEFAULT_READ_RATE,
    cool_down: Annotated[
        float,
        typer.Option(
            min=0, help="seconds after an automatic rollback before a DynamoDB-served stage (the watchdog's cool-down)"
        ),
    ] = WATCHDOG_COOL_DOWN,
    who: Who = None,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
    prometheus_url: PrometheusUrl = None,
) -> None:
    """Walk TABLE to --to one stage at a time: hold each for --window while the guards (shadow mismatches, fallbacks,
    errors, DynamoDB p99 against PostgreSQL's, journal age) hold, backfill and verify where the next stage needs it,
    and stop on the first breach; exit 1 when stopped. Resumes an interrupted promotion of TABLE. With --plan, the
    plan's tables side by side (the options are their defaults); the first table that stops holds the others."""
    if (table is None) == (plan is None):
        raise typer.BadParameter("give a TABLE or --plan, not both")
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)
    try:
        target = parse_stage(to, "--to")
    except InvalidArgument as error:
        _exit_invalid("option", error)
    if prometheus_url is None:
        err.print("the guards read the services' metrics: set LOANBOOK_MIGRATION_PROMETHEUS_URL or --prometheus-url")
        raise typer.Exit(2)
    operator = _who(who)
    options = PromotionOptions(
        target=target,
        window_seconds=window,
        poll_seconds=poll,
        evidence_timeout_seconds=evidence_timeout,
        limits=GuardLimits(
            max_mismatch_ratio=max_mismatch_ratio,
            min_comparisons=min_comparisons,
            max_fallback_ratio=max_fallback_ratio,
            max_error_ratio=max_error_ratio,
            max_latency_ratio=max_latency_ratio,
            min_calls_per_backend=min_calls,
            max_journal_age_seconds=max_journal_age,
        ),
        cool_down_seconds=cool_down,
        who=operator,
        backfill=BackfillOptions(who=operator),
        verify=VerifyOptions(who=operator, pacing=_pacing(rate_limit, True, 2.0)),
    )

    try:
        per_table = {check_table(table): options} if table is not None else load_plan(Path(str(plan)), options)
    except InvalidArgument as error:
        _exit_invalid(f"plan {plan}" if plan else "table", error)

    async def work() -> bool:
        view, held = LiveGuards(), PlanHold()
        async with _stores(settings, 16 * len(per_table)) as (pool, client):
            specs = _specs(settings, list(per_table))
            with view.live:  # one live display: the backfill and verify report as decisions, without bars
                results = await asyncio.gather(
                    *(
                        Promoter(
                            pool,
                            client,
                            spec,
                            settings.table_name,
                            prometheus_url,
                            per_table[spec.name],
                            view,
                            plan=held,
                        ).run()
                        for spec in specs
                    )
                )
        for result in results:
            out.print(
                f"{result.table}: promotion {result.promotion_id} {result.status} in {result.stage.value}: "
                f"{result.detail}",
                markup=False,
            )
        return all(result.status == "finished" for result in results)

    _run_or_exit_1(work)
