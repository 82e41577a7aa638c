"""`loanbook migrate plan|status|backfill|verify|switch|watchdog|rollback|history` over the toolkit's engine
(`promote`: toolkit.promote_command)."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import asyncpg
import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgressBars
from rich.text import Text

from chassis.config import SECRETS_DIR_VARIABLE, ConfigurationError, secrets_dir
from chassis.errors import DomainError, FailedPrecondition
from chassis.stores import StoreUnavailable, dynamodb_client, postgres_pool
from migration.control import ControlPlane, check_table, parse_stage, reverse_sync_pending
from migration.schema import upgrade_to_head
from migration.stages import TABLES, Stage
from migration.table_spec import TableSpec
from migration.watchdog import last_automatic_rollback
from toolkit.backfill import BackfillOptions, rows_done_text, run_backfill
from toolkit.config import ToolkitSettings
from toolkit.dynamo_io import PaceReport, Pacing
from toolkit.latency import PrometheusUnavailable, latency_by_backend, latency_text
from toolkit.plan import reverse_sync_guarantee, rollback_guarantee, rollback_target, table_status
from toolkit.promotion import promoter_active
from toolkit.reverse_sync import (
    ReverseSyncOptions,
    ReverseSyncSummary,
    rollback_out_of_dynamo_only,
    run_reverse_sync,
)
from toolkit.settle import wait_for_replicas
from toolkit.specs import table_specs
from toolkit.verify import VerifyOptions, VerifySummary, run_verify

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

T = TypeVar("T")
Options = TypeVar("Options")  # a command's options
Summary = TypeVar("Summary")  # what a command reports of one table
out = Console(highlight=False, soft_wrap=True)  # lines stay whole for grep and logs
err = Console(stderr=True, highlight=False, soft_wrap=True)

# --- shared options ------------------------------------------------------------------------------------------
# Typer reads a command's options from its own signature, so each command lists the ones it takes and those lists
# repeat line for line; what an option is (type, help, limits) is declared once here. A group callback would share
# them, but would move them in front of the command name on the command line.

PostgresDsn = Annotated[
    str | None,
    typer.Option(help="PostgreSQL the services use (env LOANBOOK_MIGRATION_POSTGRES_DSN)", show_default=False),
]
DynamoEndpoint = Annotated[
    str | None,
    typer.Option(
        help="DynamoDB endpoint URL, e.g. DynamoDB Local (env LOANBOOK_MIGRATION_DYNAMODB_ENDPOINT)", show_default=False
    ),
]
Region = Annotated[str | None, typer.Option(help="AWS region (env LOANBOOK_MIGRATION_AWS_REGION)", show_default=False)]
TablePrefix = Annotated[
    str | None,
    typer.Option(
        help="DynamoDB table name prefix, as the services' (env LOANBOOK_MIGRATION_DYNAMODB_TABLE_PREFIX)",
        show_default=False,
    ),
]
PrometheusUrl = Annotated[
    str | None,
    typer.Option(
        envvar="LOANBOOK_MIGRATION_PROMETHEUS_URL",
        help="Prometheus scraping the services, for latency by backend",
        show_default=False,
    ),
]
Tables = Annotated[list[str] | None, typer.Argument(help="payments, logs (default: both)", show_default=False)]
Table = Annotated[str, typer.Argument(help="payments or logs")]
Reason = Annotated[str, typer.Option(help="why, for the audit")]
Workers = Annotated[int, typer.Option(min=1, max=64, help="parallel workers per table")]
# Several processes running the same backfill or verify share one run; a dead one's share is taken over after this.
LeaseSeconds = Annotated[
    float,
    typer.Option(
        min=2, max=3600, help="seconds a process holds a range unrenewed; others take over a dead one's after that"
    ),
]
Who = Annotated[str | None, typer.Option(help="who makes the change, for the audit (env LOANBOOK_OPERATOR)")]
# Scans of a table that serves live traffic are paced: unpaced, a rollback's reverse sync and verify slowed DynamoDB
# until the services' breaker opened (156 writes and 59 reads failed over ~5 s in a tester's run).
DEFAULT_READ_RATE = 2000.0
ReadRate = Annotated[
    float,
    typer.Option("--rate-limit", min=0, help="DynamoDB items read per second per table (0: no limit)"),
]
Backoff = Annotated[
    bool,
    typer.Option(help="halve the rate while DynamoDB answers slower than --slow-factor x its baseline latency"),
]
SlowFactor = Annotated[float, typer.Option(min=1.1, help="how much slower than the baseline counts as slow")]


def _pacing(rate_limit: float, backoff: bool, slow_factor: float) -> Pacing:
    return Pacing(rate_limit or None, backoff=backoff, slow_factor=slow_factor)


def _paced(report: PaceReport | None) -> str:
    """How a summary says what the pacing did."""
    if report is None or report.rate_limit is None:
        return ""
    text = f"; paced at {report.rate_limit:,.0f} items/s (waited {report.waited:.1f} s in all"
    if report.cuts and report.lowest_rate is not None:
        text += f", backed off {report.cuts} times, down to {report.lowest_rate:,.0f} items/s"
    return text + ")"


RecheckSeconds = Annotated[
    float,
    typer.Option(min=0, help="how long a difference whose key has a write in flight is rechecked before giving up"),
]

migrate = typer.Typer(help="Plan, backfill, verify, switch and roll back migrated tables.", no_args_is_help=True)


def settings_or_exit(dsn: str | None, endpoint: str | None, region: str | None, prefix: str | None) -> ToolkitSettings:
    """The toolkit's settings from options, environment and secrets folder; exit 2 naming what is wrong."""
    given = {"postgres_dsn": dsn, "dynamodb_endpoint": endpoint, "aws_region": region, "dynamodb_table_prefix": prefix}
    folder = None
    try:
        folder = secrets_dir()  # LOANBOOK_SECRETS_DIR, as every loanbook process reads it
        options = {key: value for key, value in given.items() if value is not None}
        return ToolkitSettings(_secrets_dir=folder, **options)  # type: ignore[arg-type]
    except ConfigurationError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(2) from None
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            field = ".".join(str(part) for part in issue["loc"])
            where = (
                f" (neither in the environment nor a file in {folder})" if folder and issue["type"] == "missing" else ""
            )
            problems.append(
                f"LOANBOOK_MIGRATION_{field.upper()} (or --{field.replace('_', '-')}): {issue['msg']}{where}"
            )
        err.print("invalid configuration: " + "; ".join(problems), markup=False)
        raise typer.Exit(2) from None
    except (OSError, SettingsError) as error:  # a secret file that cannot be read
        err.print(f"invalid configuration: {SECRETS_DIR_VARIABLE}: {error}", markup=False)
        raise typer.Exit(2) from None


def _who(who: str | None) -> str:
    return who or os.environ.get("LOANBOOK_OPERATOR") or getpass.getuser()


def _tables(names: list[str] | None) -> list[str]:
    return [check_table(name) for name in names] if names else list(TABLES)


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs the command; refusals and unreachable stores end it with a message and a non-zero exit code."""
    try:
        return asyncio.run(work())
    except DomainError as error:
        err.print(f"refused: {error}", markup=False)
        raise typer.Exit(1) from None
    except StoreUnavailable as error:
        err.print(str(error), markup=False)
        raise typer.Exit(2) from None


def _run_or_exit_1(work: Callable[[], Coroutine[Any, Any, bool]]) -> None:
    """Runs a command whose work says whether all went well; exit code 1 when it did not."""
    if not _run(work):
        raise typer.Exit(1)


@asynccontextmanager
async def _postgres(settings: ToolkitSettings, connections: int = 4) -> AsyncIterator[asyncpg.Pool]:
    await upgrade_to_head(settings.postgres_dsn.get_secret_value())
    size = max(connections, settings.postgres_pool_max_size)
    # The backfill takes session-level advisory locks: keep asyncpg's full reset when a connection goes back.
    settings = settings.model_copy(update={"postgres_pool_max_size": size})
    async with postgres_pool(settings, reset_sessions=True) as pool:
        yield pool


@asynccontextmanager
async def _stores(
    settings: ToolkitSettings, connections: int = 4
) -> AsyncIterator[tuple[asyncpg.Pool, DynamoDBClient]]:
    async with _postgres(settings, connections) as pool, dynamodb_client(settings) as client:
        yield pool, client


def _specs(settings: ToolkitSettings, tables: list[str]) -> list[TableSpec]:
    return table_specs(tables, settings.log_shards, settings.log_retention)


# --- progress ------------------------------------------------------------------------------------------------


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} rows/s" if task.speed else "- rows/s", style="progress.data.speed")


class RichProgress:
    """One bar per table with rows done of the total, rate and ETA (on stderr, so stdout holds the results)."""

    def __init__(self) -> None:
        self.bars = RichProgressBars(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def start(self, table: str, total: int, done: int) -> None:
        self._tasks[table] = self.bars.add_task(table, total=max(total, done), completed=done)

    def advance(self, table: str, rows: int) -> None:
        task = self._tasks[table]
        self.bars.advance(task, rows)
        # Rows inserted since the count keep the bar from ending early; the total follows them.
        current = self.bars.tasks[task]
        if current.total is not None and current.completed > current.total:
            self.bars.update(task, total=current.completed)

    def advance_elsewhere(self, table: str, rows: int) -> None:
        """Rows other processes of the same run copied: one bar for the whole run, whoever does the work."""
        self.advance(table, rows)


async def _with_bars(
    run: Callable[
        [asyncpg.Pool, DynamoDBClient, list[TableSpec], Callable[[str], str], Options, RichProgress],
        Coroutine[Any, Any, list[Summary]],
    ],
    pool: asyncpg.Pool,
    client: DynamoDBClient,
    specs: list[TableSpec],
    settings: ToolkitSettings,
    options: Options,
) -> list[Summary]:
    """Runs a backfill, verify or reverse sync over `specs` with a progress bar per table on stderr."""
    progress = RichProgress()
    with progress.bars:
        return await run(pool, client, specs, settings.table_name, options, progress)


async def _latency_line(prometheus_url: str | None, table: str) -> str:
    if prometheus_url is None:
        return "set LOANBOOK_MIGRATION_PROMETHEUS_URL (or --prometheus-url) to see latency by backend"
    try:
        return latency_text(await latency_by_backend(prometheus_url, table))
    except PrometheusUnavailable as error:
        return str(error)


async def _promotion_line(pool: asyncpg.Pool, table: str) -> str:
    last = await pool.fetchrow(
        """SELECT p.id, p.target_stage, p.status, p.outcome, d.decision, d.detail, d.decided_at
           FROM migration.promotions p
           LEFT JOIN LATERAL (SELECT decision, detail, decided_at FROM migration.promotion_decisions
                              WHERE promotion_id = p.id ORDER BY id DESC LIMIT 1) d ON true
           WHERE p.table_name = $1 ORDER BY p.id DESC LIMIT 1""",
        table,
    )
    if last is None:
        return "none (`loanbook migrate promote` walks the stages on evidence)"
    latest = "" if last["decision"] is None else f"; last decision {last['decision']}: {last['detail']}"
    interrupted = last["status"] == "running" and not await promoter_active(pool, table)
    resume = " (interrupted: `loanbook migrate promote` resumes it)" if interrupted else ""
    return f"{last['id']} to {last['target_stage']}, {last['status']}{resume}{latest}"


async def _watchdog_line(pool: asyncpg.Pool, table: str) -> str:
    state = "on" if await ControlPlane(pool).watchdog_enabled(table) else "off"
    last = await last_automatic_rollback(pool, table)
    if last is None:
        return f"{state}; no automatic rollback yet"
    return f"{state}; last automatic rollback {last['changed_at']:%Y-%m-%d %H:%M:%S %Z} ({last['changed_by']})"


# --- commands ------------------------------------------------------------------------------------------------


@migrate.command("status")
@migrate.command("plan")
def plan(
    tables: Tables = None,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
    prometheus_url: PrometheusUrl = None,
) -> None:
    """Each table's stage, fallback, journal backlog, rows in each store, last backfill and verification, latency
    by backend (from Prometheus), and the next safe step."""
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)
    names = _tables(tables)

    async def work() -> None:
        async with _stores(settings) as (pool, client):
            for spec in _specs(settings, names):
                status = await table_status(pool, client, spec, settings.table_name(spec.name))
                mode, backlog = status.mode, status.backlog
                configured = "" if status.configured else " (no mode stored yet: the services' default)"
                items = "no table" if status.dynamodb_items is None else f"~{status.dynamodb_items:,} items"
                lines = [
                    (
                        "stage",
                        f"{mode.stage.value}, fallback {'on' if mode.fallback else 'off'}, "
                        f"revision {mode.revision}{configured}",
                    ),
                    (
                        "journal backlog",
                        f"{backlog.pending} pending, oldest {backlog.oldest_age_seconds:.1f} s, "
                        f"{backlog.retrying} retrying",
                    ),
                    ("rows", f"PostgreSQL {status.postgres_rows:,} rows; DynamoDB {items}"),
                ]
                run = status.last_backfill
                lines.append(
                    (
                        "last backfill",
                        "none"
                        if run is None
                        else f"run {run.id} {run.status}, {rows_done_text(run.rows_done, run.rows_total)}, started "
                        f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}"
                        + (f", finished {run.finished_at:%Y-%m-%d %H:%M:%S %Z}" if run.finished_at else ""),
                    )
                )
                check = status.last_verification
                lines.append(
                    (
                        "last verification",
                        "none"
                        if check is None
                        else f"{'clean' if check.clean else f'{check.differences} differences'}, "
                        f"{check.scope}, {check.rows_checked:,} rows, "
                        f"finished {check.finished_at:%Y-%m-%d %H:%M:%S %Z}",
                    )
                )
                lines.append(("promotion", await _promotion_line(pool, spec.name)))
                lines.append(("watchdog", await _watchdog_line(pool, spec.name)))
                lines.append(("latency", await _latency_line(prometheus_url, spec.name)))
                lines.append(("next step", status.next_step))
                out.print(f"[bold]{spec.name}[/bold]")
                for label, value in lines:
                    out.print(f"  {label:<18} {escape(value)}")

    _run(work)


@migrate.command()
def backfill(
    tables: Tables = None,
    workers: Workers = 4,
    batch_rows: Annotated[int, typer.Option(min=1, max=10_000, help="rows per page and checkpoint")] = 500,
    write_concurrency: Annotated[int, typer.Option(min=1, max=64, help="BatchWriteItem calls per worker")] = 4,
    rate_limit: Annotated[
        float | None, typer.Option(min=1, help="items per second per table (provisioned capacity)")
    ] = None,
    restart: Annotated[bool, typer.Option(help="abandon an unfinished run and start over")] = False,
    lease_seconds: LeaseSeconds = 30.0,
    settle_seconds: Annotated[
        float, typer.Option(min=0, help="seconds every replica needs to follow a switch; the copy waits that long")
    ] = 5.0,
    who: Who = None,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
) -> None:
    """Copy historical rows from PostgreSQL to DynamoDB; resumes an unfinished run where it stopped. The tables must
    be dual-writing, so that every later write reaches DynamoDB too."""
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)
    names = _tables(tables)
    options = BackfillOptions(
        workers=workers,
        batch_rows=batch_rows,
        write_concurrency=write_concurrency,
        rate_limit=rate_limit,
        restart=restart,
        who=_who(who),
        lease_seconds=lease_seconds,
    )

    async def work() -> None:
        async with _stores(settings, (2 * workers + 2) * len(names)) as (pool, client):
            for name in names:  # a write that started before the switch to dual_write reaches PostgreSQL alone
                if waited := await wait_for_replicas(pool, name, settle_seconds):
                    err.print(
                        f"{name}: waited {waited:.1f} s for every replica to follow the last switch", markup=False
                    )
            summaries = await _with_bars(run_backfill, pool, client, _specs(settings, names), settings, options)
        for s in summaries:
            resumed = " (resumed)" if s.resumed else ""
            out.print(
                f"{s.table}: run {s.run_id}{resumed} copied {s.rows:,} rows as {s.items:,} items in {s.seconds:.1f} s "
                f"({s.rows_per_second:,.0f} rows/s, {s.write_units:,.1f} DynamoDB write units); "
                f"{rows_done_text(s.rows_done, s.rows_total)}, {s.ranges} ranges. "
                f"Next: `loanbook migrate verify {s.table}`",
                markup=False,
            )

    _run(work)


@migrate.command()
def verify(
    tables: Tables = None,
    sample: Annotated[float, typer.Option(min=0.0001, max=1.0, help="fraction of key ranges compared")] = 1.0,
    repair: Annotated[bool, typer.Option(help="re-sync differing items from PostgreSQL (authoritative)")] = False,
    workers: Workers = 4,
    show: Annotated[int, typer.Option(min=0, help="differences listed per table")] = 20,
    recheck_seconds: RecheckSeconds = 5.0,
    rate_limit: ReadRate = DEFAULT_READ_RATE,
    backoff: Backoff = True,
    slow_factor: SlowFactor = 2.0,
    lease_seconds: LeaseSeconds = 30.0,
    restart: Annotated[
        bool, typer.Option(help="abandon the unfinished full verification instead of joining it")
    ] = False,
    incremental: Annotated[
        bool,
        typer.Option(
            help="compare only the keys written since the latest verification (it builds on a clean full one)"
        ),
    ] = False,
    who: Who = None,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
) -> None:
    """Compare PostgreSQL and DynamoDB row by row (counts and content checksums); exit 1 on any difference.

    Full by default; --sample compares a fraction of key ranges; --incremental only the keys written since the
    latest verification (seconds whatever the table's size), which the guards take for a full one while its chain
    back to a clean full verification is unbroken (`loanbook migrate status` shows it)."""
    if incremental and (sample < 1.0 or restart):
        raise typer.BadParameter(
            "--incremental compares the keys written since the latest verification: not with --sample or --restart"
        )
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)
    names = _tables(tables)
    options = VerifyOptions(
        incremental=incremental,
        sample=sample,
        workers=workers,
        repair=repair,
        recheck_seconds=recheck_seconds,
        pacing=_pacing(rate_limit, backoff, slow_factor),
        lease_seconds=lease_seconds,
        restart=restart,
        who=_who(who),
    )

    async def work() -> bool:
        async with _stores(settings, (workers + 2) * len(names)) as (pool, client):
            if repair:
                for name in names:
                    if (pending := await reverse_sync_pending(pool, name)) is not None:
                        raise FailedPrecondition(
                            f"{pending}. --repair would make DynamoDB match PostgreSQL and so delete what only "
                            "DynamoDB holds; verify without --repair"
                        )
            summaries = await _with_bars(run_verify, pool, client, _specs(settings, names), settings, options)
        for s in summaries:
            scope = "full" if s.full else f"sampled {s.sample:.0%}"
            if s.incremental:
                scope = f"incremental since verification {s.follows}, {s.keys_checked:,} written keys"
            out.print(
                f"{s.table}: {_verdict(s)} ({scope}: {s.rows_checked:,} rows as {s.items_checked:,} items checked, "
                f"{s.items_scanned:,} DynamoDB items scanned, {s.seconds:.1f} s, {s.rows_per_second:,.0f} rows/s; "
                f"{s.read_units:,.1f} DynamoDB read units, {s.write_units:,.1f} write units; "
                f"verification {s.verification_id}{_paced(s.pacing)})",
                markup=False,
            )
            _print_differences(s, show)
            if s.difference_count > show:
                out.print(f"  ... and {s.difference_count - min(show, len(s.differences)):,} more", markup=False)
            _print_in_flight(s)
            if s.repaired:
                out.print(
                    f"  repaired {s.repaired:,} items; run verify again to record a clean verification", markup=False
                )
        return all(s.clean for s in summaries)

    _run_or_exit_1(work)


@migrate.command()
def switch(
    table: Table,
    stage: Annotated[str | None, typer.Argument(help="the stage to move to", show_default=False)] = None,
    fallback: Annotated[
        str | None, typer.Option(help="on|off: serve reads from PostgreSQL when DynamoDB fails")
    ] = None,
    who: Who = None,
    reason: Reason = "",
    drain_seconds: Annotated[
        float, typer.Option(min=0, help="to dynamo_only: how long to wait for the journal to drain before refusing")
    ] = 30.0,
    postgres_dsn: PostgresDsn = None,
) -> None:
    """Move a table to another stage and/or set its fallback, guarded and audited; every replica follows."""
    if stage is None and fallback is None:
        raise typer.BadParameter("give a stage, --fallback, or both")
    if fallback not in (None, "on", "off"):
        raise typer.BadParameter("on or off", param_hint="--fallback")
    settings = settings_or_exit(postgres_dsn, None, None, None)

    async def work() -> None:
        async with _postgres(settings) as pool:
            control = ControlPlane(pool)
            await control.ensure_defaults(who="loanbook migrate")
            before = await control.mode(check_table(table))
            mode = await control.change(
                table,
                stage=parse_stage(stage) if stage else None,
                fallback=None if fallback is None else fallback == "on",
                who=_who(who),
                reason=reason,
                drain_seconds=drain_seconds,
                waiting=lambda message: err.print(message, markup=False),
            )
        out.print(
            f"{mode.table}: {before.stage.value} -> {mode.stage.value}, fallback {'on' if mode.fallback else 'off'} "
            f"(revision {mode.revision}); every replica follows within a second",
            markup=False,
        )

    _run(work)


@migrate.command()
def watchdog(
    table: Table,
    state: Annotated[str | None, typer.Argument(help="on|off (none: show it)", show_default=False)] = None,
    who: Who = None,
    postgres_dsn: PostgresDsn = None,
) -> None:
    """Turn a table's watchdog on or off: while DynamoDB serves the table's reads, it moves the table back to shadow
    when they fall back, fail or mismatch for a sustained window. On unless turned off."""
    if state not in (None, "on", "off"):
        raise typer.BadParameter("on or off", param_hint="STATE")
    settings = settings_or_exit(postgres_dsn, None, None, None)
    name = check_table(table)

    async def work() -> None:
        async with _postgres(settings) as pool:
            if state is not None:
                await ControlPlane(pool).set_watchdog(name, state == "on", _who(who))
            out.print(f"{name}: watchdog {await _watchdog_line(pool, name)}", markup=False)

    _run(work)


Settle = Annotated[
    float,
    typer.Option(min=0, help="seconds every replica needs to follow a switch; the scan waits that long after it"),
]
Segments = Annotated[int, typer.Option(min=1, max=256, help="parallel DynamoDB Scan segments per table")]


def _verdict(s: VerifySummary) -> str:
    return "clean" if s.clean else f"{s.missing} missing, {s.extra} extra, {s.differing} differing"


def _print_differences(s: VerifySummary, show: int) -> None:
    for difference in s.differences[:show]:
        fields = f": {', '.join(difference.fields)}" if difference.fields else ""
        out.print(f"  {difference.kind:<9} {' '.join(difference.key)}{fields}", markup=False)


def _print_in_flight(s: VerifySummary) -> None:
    if s.in_flight:
        out.print(
            f"  {s.in_flight:,} keys had a write in flight (journaled, not yet in DynamoDB) until the recheck "
            "gave up: not differences, the relay copies them",
            markup=False,
        )


def _print_sync(s: ReverseSyncSummary) -> None:
    out.print(
        f"{s.table}: reverse sync {s.run_id} scanned {s.items_scanned:,} DynamoDB items in {s.seconds:.1f} s "
        f"({s.items_per_second:,.0f} items/s): {s.inserted:,} rows inserted into PostgreSQL, {s.updated:,} updated "
        f"(PostgreSQL's version was older), {s.kept:,} kept (PostgreSQL's version was the same or newer), "
        f"{s.skipped:,} skipped (idempotency markers, expired log entries), {s.conflicts:,} conflicts; "
        f"{s.read_units:,.1f} DynamoDB read units{_paced(s.pacing)}",
        markup=False,
    )
    for key in s.conflict_keys:
        out.print(f"  conflict  {key}: its idempotency key belongs to another payment in PostgreSQL", markup=False)


@migrate.command("reverse-sync")
def reverse_sync(
    tables: Tables = None,
    segments: Segments = 8,
    settle_seconds: Settle = 5.0,
    rate_limit: ReadRate = DEFAULT_READ_RATE,
    backoff: Backoff = True,
    slow_factor: SlowFactor = 2.0,
    who: Who = None,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
) -> None:
    """Copy DynamoDB's items into PostgreSQL, never replacing a newer version (payments: upsert where PostgreSQL's
    version is older; log entries: insert where absent). Needs a stage in which PostgreSQL receives every write;
    `rollback` out of dynamo_only runs it for you."""
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)
    names = _tables(tables)
    options = ReverseSyncOptions(
        segments=segments,
        settle_seconds=settle_seconds,
        who=_who(who),
        pacing=_pacing(rate_limit, backoff, slow_factor),
    )

    async def work() -> bool:
        async with _stores(settings, 4 + segments * len(names)) as (pool, client):
            summaries = await _with_bars(run_reverse_sync, pool, client, _specs(settings, names), settings, options)
        for s in summaries:
            _print_sync(s)
            out.print(f"  Next: `loanbook migrate verify {s.table}` (a clean full verification)", markup=False)
        return all(s.clean for s in summaries)

    _run_or_exit_1(work)


@migrate.command()
def rollback(
    table: Table,
    to: Annotated[str | None, typer.Option(help="an earlier stage (default: the safe one)", show_default=False)] = None,
    who: Who = None,
    reason: Reason = "rollback",
    segments: Segments = 8,
    settle_seconds: Settle = 5.0,
    workers: Workers = 4,
    rate_limit: ReadRate = DEFAULT_READ_RATE,
    backoff: Backoff = True,
    slow_factor: SlowFactor = 2.0,
    recheck_seconds: RecheckSeconds = 5.0,
    postgres_dsn: PostgresDsn = None,
    dynamodb_endpoint: DynamoEndpoint = None,
    region: Region = None,
    table_prefix: TablePrefix = None,
) -> None:
    """Move a table back so that PostgreSQL serves its reads again, and say what that guarantees.

    From dynamo_only (or part-way back from it): switch to dynamo_primary with fallback off, copy DynamoDB's items
    back into PostgreSQL (reverse sync), verify in full, then restore fallback (and go on to --to, if given)."""
    settings = settings_or_exit(postgres_dsn, dynamodb_endpoint, region, table_prefix)

    async def work() -> bool:
        async with _postgres(settings) as pool:
            control = ControlPlane(pool)
            await control.ensure_defaults(who="loanbook migrate")
            before = await control.mode(check_table(table))
            wanted = parse_stage(to, "--to") if to else None
            if before.stage is not Stage.DYNAMO_ONLY and await reverse_sync_pending(pool, table) is None:
                target = rollback_target(before, wanted)
                mode = await control.change(table, stage=target, who=_who(who), reason=reason)
                out.print(
                    f"{table}: rolled back {before.stage.value} -> {mode.stage.value} (revision {mode.revision}).",
                    markup=False,
                )
                out.print(f"Guarantee: {rollback_guarantee(mode.stage)}", markup=False)
                return True
        pacing = _pacing(rate_limit, backoff, slow_factor)
        options = ReverseSyncOptions(segments=segments, settle_seconds=settle_seconds, who=_who(who), pacing=pacing)
        verify_options = VerifyOptions(workers=workers, recheck_seconds=recheck_seconds, pacing=pacing)
        async with _stores(settings, 4 + (segments + workers) * 2) as (pool, client):
            progress = RichProgress()
            with progress.bars:
                ways = await rollback_out_of_dynamo_only(
                    pool,
                    client,
                    _specs(settings, [table]),
                    settings.table_name,
                    to=wanted,
                    who=_who(who),
                    reason=reason,
                    options=options,
                    verify_options=verify_options,
                    progress=progress,
                )
        for way in ways:
            if way.from_stage is Stage.DYNAMO_ONLY:
                out.print(
                    f"{way.table}: dynamo_only -> dynamo_primary, fallback off: PostgreSQL receives every write "
                    "again, DynamoDB serves every read, PostgreSQL answers none yet",
                    markup=False,
                )
            if way.sync is not None:
                _print_sync(way.sync)
            check = way.verification
            if check is not None:
                out.print(
                    f"{way.table}: verification {check.verification_id}: {_verdict(check)} (full: "
                    f"{check.rows_checked:,} rows, {check.items_scanned:,} DynamoDB items scanned"
                    f"{_paced(check.pacing)})",
                    markup=False,
                )
                _print_differences(check, 20)
                _print_in_flight(check)
            if not way.complete:
                out.print(
                    f"{way.table}: stays in {way.stage.value} with fallback off (PostgreSQL answers no read); "
                    f"fix what is reported and run `loanbook migrate rollback {way.table}` again",
                    markup=False,
                )
                continue
            out.print(
                f"{way.table}: rolled back {way.from_stage.value} -> {way.stage.value}, fallback "
                f"{'on' if way.fallback else 'off'}.",
                markup=False,
            )
            out.print(f"Guarantee: {reverse_sync_guarantee(settle_seconds)}", markup=False)
            if way.stage is not Stage.DYNAMO_PRIMARY:
                out.print(f"Guarantee: {rollback_guarantee(way.stage)}", markup=False)
        return all(way.complete for way in ways)

    _run_or_exit_1(work)


@migrate.command()
def history(
    table: Table,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    postgres_dsn: PostgresDsn = None,
) -> None:
    """The audit trail of a table's mode: who changed it, when, from what to what, and why."""
    settings = settings_or_exit(postgres_dsn, None, None, None)

    async def work() -> None:
        async with _postgres(settings) as pool:
            changes = await ControlPlane(pool).history(check_table(table), limit)
        for change in changes:
            out.print(
                f"{change.changed_at:%Y-%m-%d %H:%M:%S} {change.changed_by}: "
                f"{change.from_stage.value if change.from_stage else '-'} -> {change.to_stage.value}, "
                f"fallback {change.from_fallback} -> {change.to_fallback} {change.reason}",
                markup=False,
            )

    _run(work)
