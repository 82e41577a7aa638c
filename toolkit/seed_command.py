"""`loanbook seed`: load realistic historical payments and log entries into PostgreSQL, for demos and benchmarks."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from toolkit.seeding import SeedPlan, seed

DSN_ENV = "LOANBOOK_MIGRATION_POSTGRES_DSN"
# The logging service drops daily partitions older than its retention (30 days by default) at its next
# maintenance, so older log history would vanish again.
DEFAULT_RETENTION_DAYS = 30


class RateColumn(ProgressColumn):
    """Rows per second (Rich's own speed column speaks bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:>9,.0f} rows/s" if task.speed else f"{'':>9} rows/s", style="progress.data.speed")


def seed_command(
    payments: Annotated[int, typer.Option(min=0, help="Payments to add.")] = 500_000,
    logs: Annotated[int, typer.Option(min=0, help="Log entries to add.")] = 1_000_000,
    customers: Annotated[
        int, typer.Option(min=1, help="Spread payments over this many customers; missing ones are created.")
    ] = 10_000,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Payments span this many days up to now.")] = 365,
    log_days: Annotated[int, typer.Option(min=1, max=3650, help="Log entries span this many days up to now.")] = 7,
    seed_value: Annotated[
        int, typer.Option("--seed", help="Random seed: the same seed generates the same values (ids stay fresh).")
    ] = 1,
    dsn: Annotated[
        str, typer.Option(envvar=DSN_ENV, show_default=False, help=f"PostgreSQL DSN [env: {DSN_ENV}].")
    ] = "",
) -> None:
    """Add historical payments (for customers' FUNDED loans) and log entries to PostgreSQL with COPY.

    Writes PostgreSQL only: this is the history that predates the migration, for `loanbook migrate backfill`
    to copy. Re-running adds more rows; nothing collides with what is there.
    """
    console = Console(stderr=True)
    if not dsn:
        console.print(f"[red]error:[/] set {DSN_ENV} or pass --dsn with the PostgreSQL the services use")
        raise typer.Exit(2)
    if logs and log_days > DEFAULT_RETENTION_DAYS:
        console.print(
            f"[yellow]warning:[/] log entries older than the logging service's retention "
            f"({DEFAULT_RETENTION_DAYS} days by default) are dropped at its next partition maintenance"
        )
    plan = SeedPlan(payments, logs, customers, days, log_days, seed_value, datetime.now(UTC))
    columns = (
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        payment_task = progress.add_task("payments", total=payments)
        log_task = progress.add_task("logs", total=logs)
        result = asyncio.run(
            seed(
                dsn,
                plan,
                on_payments=lambda n: progress.advance(payment_task, n),
                on_logs=lambda n: progress.advance(log_task, n),
            )
        )
    seconds = time.perf_counter() - started
    rows = result.payments + result.logs
    console.print(
        f"seeded {result.payments:,} payments over {result.loans_used:,} funded loans "
        f"({result.customers_created:,} customers created) and {result.logs:,} log entries "
        f"({len(result.partitions_created)} daily partitions created) in {seconds:.1f} s "
        f"({rows / seconds:,.0f} rows/s)"
    )
