"""The benchmarks' command lines keep the options, names and full-size defaults they had before Typer, and take their
defaults from BENCH_SIZE; parsed without running."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bench import (
    customer_reads,
    gateway_overhead,
    grpc_floor,
    log_ingestion,
    migration_backfill,
    payment_history,
    scale_curve,
    shared_runs,
    telemetry_cost,
    workers,
    write_path,
)

runner = CliRunner()


def parsed(app: typer.Typer, argv: list[str]) -> dict[str, Any]:
    """The values the benchmark's command would be called with; parsing only, nothing runs."""
    command = typer.main.get_command(app)
    with command.make_context("bench", argv) as context:
        return dict(context.params)


@pytest.fixture(autouse=True)
def full_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The former defaults are the full size's."""
    monkeypatch.setenv("BENCH_SIZE", "full")


# What the former parsers produced from no arguments (their `dsn`/`endpoint` were None where these are "", and
# `--child` is the parameter `child_kind` here).
DEFAULTS = {
    "customer_reads": (customer_reads.app, {"iterations": 2000}),
    "payment_history": (
        payment_history.app,
        {"payments": 1_000_000, "customers": 20_000, "iterations": 2000, "rounds": 4},
    ),
    "gateway_overhead": (
        gateway_overhead.app,
        {
            "payments": 20_000,
            "customers": 400,
            "iterations": 2000,
            "profile_gateway": None,
            "output": "gateway_overhead",
        },
    ),
    "log_ingestion": (
        log_ingestion.app,
        {
            "entries": 1_000_000,
            "services": 20,
            "hours": 48,
            "ingest_batches": 40,
            "concurrency": 4,
            "rounds": 3,
            "iterations": 1000,
        },
    ),
    "migration_backfill": (
        migration_backfill.app,
        {
            "payments": 500_000,
            "logs": 1_000_000,
            "customers": 10_000,
            "ceiling_items": 0,
            "workers": 4,
            "write_concurrency": 4,
            "child_kind": None,
            "dsn": "",
            "endpoint": "",
        },
    ),
}

# Every option given, and what the former parsers produced from the same arguments.
GIVEN = {
    "customer_reads": (customer_reads.app, ["--iterations", "7"], {"iterations": 7}),
    "payment_history": (
        payment_history.app,
        ["--payments", "10", "--customers", "3", "--iterations", "4", "--rounds", "2"],
        {"payments": 10, "customers": 3, "iterations": 4, "rounds": 2},
    ),
    "gateway_overhead": (
        gateway_overhead.app,
        [
            "--payments",
            "10",
            "--customers",
            "3",
            "--iterations",
            "4",
            "--profile-gateway",
            "/tmp/x.prof",
            "--output",
            "o",
        ],
        {"payments": 10, "customers": 3, "iterations": 4, "profile_gateway": "/tmp/x.prof", "output": "o"},
    ),
    "log_ingestion": (
        log_ingestion.app,
        [
            "--entries",
            "1",
            "--services",
            "2",
            "--hours",
            "3",
            "--ingest-batches",
            "4",
            "--concurrency",
            "5",
            "--rounds",
            "6",
            "--iterations",
            "7",
        ],
        {"entries": 1, "services": 2, "hours": 3, "ingest_batches": 4, "concurrency": 5, "rounds": 6, "iterations": 7},
    ),
    "migration_backfill": (
        migration_backfill.app,
        [
            "--payments",
            "1",
            "--logs",
            "2",
            "--customers",
            "3",
            "--ceiling-items",
            "4",
            "--workers",
            "5",
            "--write-concurrency",
            "6",
        ],
        {
            "payments": 1,
            "logs": 2,
            "customers": 3,
            "ceiling_items": 4,
            "workers": 5,
            "write_concurrency": 6,
            "child_kind": None,
            "dsn": "",
            "endpoint": "",
        },
    ),
    "migration_backfill child": (
        migration_backfill.app,
        ["--child", "verify", "--dsn", "d", "--endpoint", "e", "--workers", "2", "--write-concurrency", "3"],
        {
            "payments": 500_000,
            "logs": 1_000_000,
            "customers": 10_000,
            "ceiling_items": 0,
            "workers": 2,
            "write_concurrency": 3,
            "child_kind": "verify",
            "dsn": "d",
            "endpoint": "e",
        },
    ),
    "grpc_floor on PostgreSQL": (
        grpc_floor.app,
        ["--port", "1", "--postgres", "dsn"],
        {"port": 1, "postgres": "dsn", "dynamodb": None, "table": ""},
    ),
    "grpc_floor on DynamoDB": (
        grpc_floor.app,
        ["--port", "2", "--dynamodb", "http://x", "--table", "t"],
        {"port": 2, "postgres": None, "dynamodb": "http://x", "table": "t"},
    ),
}


# The options whose default follows BENCH_SIZE: (quick, full).
SIZED = {
    "customer_reads": (customer_reads.app, {"iterations": (500, 2000)}),
    "payment_history": (
        payment_history.app,
        {"payments": (20_000, 1_000_000), "customers": (400, 20_000), "iterations": (300, 2000), "rounds": (2, 4)},
    ),
    "gateway_overhead": (
        gateway_overhead.app,
        {"payments": (5_000, 20_000), "customers": (100, 400), "iterations": (300, 2000)},
    ),
    "telemetry_cost": (
        telemetry_cost.app,
        {"payments": (5_000, 20_000), "customers": (100, 400), "iterations": (300, 2000)},
    ),
    "log_ingestion": (
        log_ingestion.app,
        {"entries": (50_000, 1_000_000), "ingest_batches": (8, 40), "rounds": (2, 3), "iterations": (300, 1000)},
    ),
    "migration_backfill": (
        migration_backfill.app,
        {"payments": (20_000, 500_000), "logs": (40_000, 1_000_000), "customers": (2_000, 10_000)},
    ),
    "shared_runs": (shared_runs.app, {"payments": (5_000, 200_000), "rounds": (1, 2)}),
    "write_path": (
        write_path.app,
        {
            "payments": (10_000, 100_000),
            "customers": (400, 2_000),
            "calls": (300, 2000),
            "rounds": (2, 4),
            "concurrent_calls": (640, 4000),
        },
    ),
    "workers": (
        workers.app,
        {"payments": (5_000, 20_000), "customers": (100, 400), "calls": (1000, 4000), "rounds": (2, 3)},
    ),
    "scale_curve": (
        scale_curve.app,
        {
            "payments": ([10_000, 40_000], [100_000, 1_000_000, 3_000_000]),
            "dynamodb_max_payments": (40_000, 1_000_000),
            "logs": ([20_000, 80_000], [1_000_000, 10_000_000]),
            "dynamodb_max_logs": (80_000, 1_000_000),
            "iterations": (200, 1000),
            "per_service_hour": (50, 1000),
        },
    ),
}


@pytest.mark.parametrize("size", ["quick", "full"])
@pytest.mark.parametrize(("app", "sized"), SIZED.values(), ids=SIZED.keys())
def test_defaults_follow_bench_size(
    app: typer.Typer, sized: dict[str, tuple[Any, Any]], size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_SIZE", size)
    params = parsed(app, [])

    assert {name: params[name] for name in sized} == {name: pair[size == "full"] for name, pair in sized.items()}


def test_an_option_given_wins_over_bench_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SIZE", "quick")

    assert parsed(payment_history.app, ["--payments", "7"])["payments"] == 7
    assert parsed(scale_curve.app, ["--payments", "5", "--payments", "9"])["payments"] == [5, 9]


@pytest.mark.parametrize(("app", "expected"), DEFAULTS.values(), ids=DEFAULTS.keys())
def test_each_benchmark_keeps_its_defaults(app: typer.Typer, expected: dict[str, Any]) -> None:
    assert parsed(app, []) == expected


@pytest.mark.parametrize(("app", "argv", "expected"), GIVEN.values(), ids=GIVEN.keys())
def test_each_option_keeps_its_name_and_type(app: typer.Typer, argv: list[str], expected: dict[str, Any]) -> None:
    assert parsed(app, argv) == expected


@pytest.mark.parametrize("app", [*(app for app, _ in DEFAULTS.values()), grpc_floor.app])
def test_help_is_answered_with_minus_h_as_well_as_minus_minus_help(app: typer.Typer) -> None:
    short, long = runner.invoke(app, ["-h"]), runner.invoke(app, ["--help"])

    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output
    assert "--help" in long.output


def test_the_child_kinds_are_backfill_and_verify_only() -> None:
    with pytest.raises(typer.BadParameter):
        parsed(migration_backfill.app, ["--child", "seed"])


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--port", "1"], "give exactly one of them"),
        (["--port", "1", "--postgres", "dsn", "--dynamodb", "http://x", "--table", "t"], "give exactly one of them"),
        (["--port", "1", "--dynamodb", "http://x"], "needs --table"),
    ],
)
def test_the_floor_refuses_anything_but_one_store_before_it_starts(argv: list[str], complaint: str) -> None:
    result = runner.invoke(grpc_floor.app, argv)

    assert result.exit_code == 2
    assert complaint in result.output
