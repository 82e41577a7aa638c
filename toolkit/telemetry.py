"""The `loanbook` command's own telemetry: a trace per command, a span per table job, progress as metrics."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic_settings import SettingsConfigDict

from chassis.config import ConfigurationError, ProcessSettings, load_settings
from chassis.telemetry import Telemetry, configure_telemetry, metrics_endpoint

if TYPE_CHECKING:
    from toolkit.backfill import Progress

tracer = trace.get_tracer("loanbook.toolkit")
meter = metrics.get_meter("loanbook.toolkit")

ATTR_JOB = "loanbook.job"
ATTR_TABLE = "db.collection.name"
ATTR_OUTCOME = "loanbook.outcome"

items = meter.create_counter(
    "loanbook.toolkit.items", unit="{item}", description="Rows or items a backfill, verify or reverse sync handled"
)
progress_ratio = meter.create_gauge(
    "loanbook.toolkit.progress", description="Share of the table a backfill, verify or reverse sync has done (0..1)"
)


class ToolkitTelemetrySettings(ProcessSettings):
    """The command's metrics endpoint and environment (prefix LOANBOOK_MIGRATION_, like its other settings)."""

    model_config = SettingsConfigDict(env_prefix="LOANBOOK_MIGRATION_", extra="ignore", frozen=True)


def configure_cli_telemetry() -> Telemetry:
    """Traces and metrics for one run of the command, from the OTEL_* variables and LOANBOOK_MIGRATION_METRICS_*.

    A bad setting exits 2 naming the variable, like every other loanbook process. The command leaves asyncpg and
    botocore uninstrumented: a backfill makes millions of calls, and its tables' progress says more than spans.
    """
    try:
        settings = load_settings(ToolkitTelemetrySettings)
        return configure_telemetry(
            "loanbook-toolkit",
            environment=settings.environment.value,
            metrics_endpoint=metrics_endpoint(settings),
            trace_store_clients=False,
        )
    except ConfigurationError as error:
        print(f"loanbook: {error}", file=sys.stderr)
        sys.exit(2)


def command_path(command: object, args: Sequence[str]) -> list[str]:
    """The subcommands `args` invoke (`["migrate", "backfill"]`), never option values or arguments, which may hold
    a DSN or a reason typed by a person. `command` is the root Typer command (groups have `commands`)."""
    path: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            continue
        subcommands: dict[str, object] = getattr(command, "commands", {})
        if arg not in subcommands:
            break
        path.append(arg)
        command = subcommands[arg]
    return path


@contextlib.contextmanager
def traced_command(path: Sequence[str]) -> Iterator[None]:
    """The command's root span; its exit code becomes `process.exit.code` and an error status when not 0."""
    name = " ".join(["loanbook", *path])
    with tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, record_exception=False) as span:
        span.set_attribute("process.command", name)
        try:
            yield
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            span.set_attribute("process.exit.code", code)
            if code != 0:
                span.set_status(Status(StatusCode.ERROR, f"exit code {code}"))
            raise
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise


@contextlib.contextmanager
def traced_job(job: str, table: str) -> Iterator[None]:
    """A span around one table's backfill, verify or reverse sync."""
    with tracer.start_as_current_span(f"{job} {table}", attributes={ATTR_JOB: job, ATTR_TABLE: table}):
        yield


class MeteredProgress:
    """Passes progress on to `inner` (the CLI's bars) and records it as metrics, for a dashboard to follow a run."""

    def __init__(self, job: str, inner: Progress, outcome: str) -> None:
        self._job, self._inner, self._outcome = job, inner, outcome
        self._totals: dict[str, tuple[int, int]] = {}

    def start(self, table: str, total: int, done: int) -> None:
        self._totals[table] = (total, done)
        self._report(table)
        self._inner.start(table, total, done)

    def advance(self, table: str, rows: int) -> None:
        total, done = self._totals.get(table, (0, 0))
        # Rows written since the count push `done` past the total; the total follows them, as the bars do.
        self._totals[table] = (max(total, done + rows), done + rows)
        items.add(rows, {ATTR_JOB: self._job, ATTR_TABLE: table, ATTR_OUTCOME: self._outcome})
        self._report(table)
        self._inner.advance(table, rows)

    def advance_elsewhere(self, table: str, rows: int) -> None:
        """Rows other processes of the same run got through: the run's progress moves, this process's count not."""
        total, done = self._totals.get(table, (0, 0))
        self._totals[table] = (max(total, done + rows), done + rows)
        self._report(table)
        self._inner.advance_elsewhere(table, rows)

    def _report(self, table: str) -> None:
        total, done = self._totals[table]
        progress_ratio.set(done / total if total else 1.0, {ATTR_JOB: self._job, ATTR_TABLE: table})


def count_differences(job: str, table: str, kind: str, count: int = 1) -> None:
    """A difference a verification found (missing, extra, differing), as `loanbook.toolkit.items`."""
    items.add(count, {ATTR_JOB: job, ATTR_TABLE: table, ATTR_OUTCOME: kind})
