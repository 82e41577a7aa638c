"""`python -m bench` lists every benchmark, runs them in order and stops at the first failure; BENCH_SIZE parsing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import __main__ as runner
from bench.harness import RESULTS, BenchSizeError, bench_size, results_dir, sized

BENCH = Path(runner.__file__).resolve().parent


def modules_with_a_command_line() -> set[str]:
    """bench/ modules that define a `main` (the command a benchmark registers), read from source, not imported."""
    found = set()
    for source in BENCH.glob("*.py"):
        tree = ast.parse(source.read_text())
        if source.stem != "__main__" and any(
            isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body
        ):
            found.add(f"bench.{source.stem}")
    return found


def test_every_benchmark_with_a_command_line_is_listed_once() -> None:
    assert len(runner.BENCHMARKS) == len(set(runner.BENCHMARKS))
    assert modules_with_a_command_line() - set(runner.HELPERS) <= set(runner.BENCHMARKS)


def test_the_scale_curve_and_the_benchmarks_written_alongside_are_listed() -> None:
    assert {"bench.scale_curve", "bench.write_path", "bench.workers", "bench.payment_history"} <= set(runner.BENCHMARKS)


def test_a_helper_is_not_run_as_a_benchmark() -> None:
    assert not set(runner.HELPERS) & set(runner.BENCHMARKS)


def test_the_runner_runs_each_in_order_and_stops_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SIZE", "full")
    ran: list[str] = []
    said: list[str] = []

    def run(argv: list[str]) -> int:
        ran.append(argv[-1])
        return 3 if argv[-1] == "bench.b" else 0

    code = runner.run_all(["bench.a", "bench.b", "bench.c"], run=run, say=said.append)

    assert code == 3
    assert ran == ["bench.a", "bench.b"]
    assert any("BENCH_SIZE=full -m bench.a" in line for line in said)
    assert any("bench.b failed with exit code 3" in line for line in said)


def test_the_runner_answers_0_when_all_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_SIZE", raising=False)
    said: list[str] = []

    assert runner.run_all(["bench.a", "bench.b"], run=lambda argv: 0, say=said.append) == 0
    assert "BENCH_SIZE=quick" in said[0]


def test_a_mistyped_size_stops_the_runner_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BENCH_SIZE", "huge")
    monkeypatch.setattr(runner, "run_all", lambda: pytest.fail("ran with an unknown size"))

    assert runner.main() == 2
    assert "BENCH_SIZE='huge' is not a benchmark size: use one of quick, full" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "size"),
    [({}, "quick"), ({"BENCH_SIZE": ""}, "quick"), ({"BENCH_SIZE": "quick"}, "quick"), ({"BENCH_SIZE": "full"}, "full"),
     ({"BENCH_SIZE": " FULL "}, "full")],
)  # fmt: skip
def test_bench_size_reads_quick_by_default_and_full_on_request(environ: dict[str, str], size: str) -> None:
    assert bench_size(environ) == size


@pytest.mark.parametrize("value", ["fast", "1", "full-size", "medium"])
def test_bench_size_refuses_anything_else_saying_what_it_takes(value: str) -> None:
    with pytest.raises(BenchSizeError, match=rf"BENCH_SIZE='{value}' is not a benchmark size: use one of quick, full"):
        bench_size({"BENCH_SIZE": value})


def test_quick_and_full_results_go_to_different_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_SIZE", "full")
    assert (sized(1, 2), results_dir()) == (2, RESULTS)
    monkeypatch.setenv("BENCH_SIZE", "quick")
    assert (sized(1, 2), results_dir()) == (1, RESULTS / "quick")
