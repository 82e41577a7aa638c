"""Shared benchmark plumbing: latency statistics, interleaved timing, a store to run against, a report."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import aioboto3
import typer

from devstack.dynamodb import DynamoDBLocal
from devstack.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
Size = Literal["quick", "full"]
SIZES: tuple[Size, ...] = get_args(Size)
T = TypeVar("T")


class BenchSizeError(ValueError):
    """BENCH_SIZE holds something other than a known size."""


def bench_size(environ: Mapping[str, str] = os.environ) -> Size:
    """The size BENCH_SIZE asks for: quick (the default, a few minutes for all benchmarks) or full."""
    value = environ.get("BENCH_SIZE", "").strip().lower() or "quick"
    if value not in SIZES:
        raise BenchSizeError(
            f"BENCH_SIZE={environ['BENCH_SIZE']!r} is not a benchmark size: use one of {', '.join(SIZES)} "
            "(unset means quick)"
        )
    return value


def sized(quick: T, full: T) -> T:
    """The value for the size BENCH_SIZE asks for."""
    return full if bench_size() == "full" else quick


def sized_option(description: str, quick: T, full: T, **checks: Any) -> Any:
    """A Typer option whose default follows BENCH_SIZE (read when the command line is parsed); given, it wins.
    `checks` go to typer.Option as they are (min=, max=)."""

    def shown(value: object) -> str:
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    return typer.Option(
        default_factory=lambda: sized(quick, full),
        show_default=f"{shown(quick)} quick, {shown(full)} full (BENCH_SIZE)",
        help=description,
        **checks,
    )


def results_dir(size: Size | None = None) -> Path:
    """Where reports of a size go: full-size reports in bench/results/, quick ones in bench/results/quick/."""
    return RESULTS if (size or bench_size()) == "full" else RESULTS / "quick"


@dataclass(frozen=True)
class Latencies:
    name: str
    seconds: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) * 1000

    def row(self) -> str:
        return (
            f"| {self.name} | {len(self.seconds)} | {self.p50:.3f} | {self.percentile(95):.3f} | "
            f"{self.percentile(99):.3f} |"
        )


async def interleaved(
    calls: dict[str, Callable[[int], Awaitable[object]]], iterations: int, warmup: int = 200
) -> dict[str, Latencies]:
    """Time each call in turn, round-robin, so drift in the machine's load hits every contender alike."""
    for i in range(warmup):
        for call in calls.values():
            await call(i)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(iterations):
        for name, call in calls.items():
            started = time.perf_counter()
            await call(i)
            samples[name].append(time.perf_counter() - started)
    return {name: Latencies(name, values) for name, values in samples.items()}


@asynccontextmanager
async def postgres_for_bench() -> AsyncIterator[str]:
    """LOANBOOK_BENCH_POSTGRES_DSN if set, else a throw-away local PostgreSQL (fsync off, like the tests)."""
    if dsn := os.environ.get("LOANBOOK_BENCH_POSTGRES_DSN"):
        yield dsn
        return
    with tempfile.TemporaryDirectory(prefix="loanbook-bench-") as state:
        async with PostgresServer(Path(state), ephemeral=True) as server:
            yield server.dsn


@asynccontextmanager
async def local_stores(
    *, reachable_by_other_users: bool = False
) -> AsyncIterator[tuple[PostgresServer, DynamoDBLocal]]:
    """A throw-away PostgreSQL (fsync off, like the tests) and DynamoDB Local, side by side in one temporary folder."""
    with tempfile.TemporaryDirectory(prefix="loanbook-bench-") as state:
        if reachable_by_other_users:
            os.chmod(state, 0o711)  # noqa: S103 - an unprivileged PostgreSQL must reach its data folder
        async with (
            PostgresServer(Path(state), ephemeral=True) as postgres,
            DynamoDBLocal(Path(state), ephemeral=True) as dynamodb,
        ):
            yield postgres, dynamodb


def local_dynamodb_session() -> aioboto3.Session:
    """A session for DynamoDB Local, which takes any credentials."""
    return aioboto3.Session(
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - DynamoDB Local takes any credentials
        region_name="us-east-1",
    )


def command_line() -> typer.Typer:
    """The Typer app a benchmark registers its one command on; run as `python -m bench.<name>`."""
    return typer.Typer(
        add_completion=False,  # `python -m` leaves a shell no command name to complete
        context_settings={"help_option_names": ["-h", "--help"]},  # -h worked before the move to Typer
        pretty_exceptions_show_locals=False,  # locals hold DSNs and data sets of a million rows
    )


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def write_report(name: str, body: str) -> Path:
    """`body` as results_dir()/`name`.md, headed by the time, the machine and the size."""
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    path.write_text(f"# {name}\n\nMeasured {stamp} on {machine()}, BENCH_SIZE={bench_size()}.\n\n{body}\n")
    return path


def run_and_report(name: str, work: Coroutine[Any, Any, str]) -> None:
    """Runs a benchmark to its report, prints it and writes it as `name`.md in results_dir() (saying where)."""
    report = asyncio.run(work)
    print(report)
    print(f"written to {write_report(name, report)}")


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout}s")
