"""`python -m bench` (what `make bench` runs): every benchmark in turn at BENCH_SIZE, stopping at the first failure."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from bench.harness import BenchSizeError, bench_size, results_dir

# Every benchmark, in the order they run: the cheap ones first, so a broken set-up shows within a minute.
# A new benchmark is one line here (tests/unit/test_bench_runner.py fails until it is listed).
BENCHMARKS = (
    "bench.customer_reads",
    "bench.gateway_overhead",
    "bench.telemetry_cost",
    "bench.payment_history",
    "bench.write_path",
    "bench.log_ingestion",
    "bench.workers",
    "bench.migration_backfill",
    "bench.shared_runs",
    "bench.incremental_verify",
    "bench.scale_curve",
)
# Modules with a command line that are not benchmarks of their own.
HELPERS = ("bench.grpc_floor",)  # the floor server bench.payment_history starts


def command(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def run_all(
    benchmarks: Sequence[str] = BENCHMARKS,
    run: Callable[[list[str]], int] = lambda argv: subprocess.call(argv),
    say: Callable[[str], None] = print,
) -> int:
    """Runs each benchmark as its own process (its own memory, its own stores); the first failure's exit code."""
    size = bench_size()
    say(f"bench: {len(benchmarks)} benchmarks at BENCH_SIZE={size}, reports into {results_dir(size)}")
    started = time.monotonic()
    for number, module in enumerate(benchmarks, start=1):
        argv = command(module)
        say(f"bench: [{number}/{len(benchmarks)}] {' '.join(['BENCH_SIZE=' + size, *argv[1:]])}")
        began = time.monotonic()
        code = run(argv)
        if code != 0:
            say(f"bench: {module} failed with exit code {code}; the benchmarks after it did not run")
            return code
        say(f"bench: {module} done in {time.monotonic() - began:.0f} s")
    say(f"bench: all {len(benchmarks)} done in {(time.monotonic() - started) / 60:.1f} min")
    return 0


def main() -> int:
    try:
        bench_size()  # a mistyped size stops here, before anything starts
    except BenchSizeError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    return run_all()


if __name__ == "__main__":
    sys.exit(main())
