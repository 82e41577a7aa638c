"""The scale curve's verdict per path (p50 at the largest size against the smallest) and its plot, on made-up points."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Latencies
from bench.scale_curve import TARGET, JobRate, Point, chunks, plot, verdicts


def point(path: str, size: int, p50_ms: float) -> Point:
    return Point(path, size, Latencies(path, [p50_ms / 1000] * 5), throughput=100.0)


def test_each_path_is_judged_on_its_largest_size_against_its_smallest() -> None:
    points = [
        point("flat", 1_000_000, 1.2),
        point("flat", 100_000, 1.0),
        point("flat", 3_000_000, 1.5),
        point("steep", 100_000, 1.0),
        point("steep", 1_000_000, 1.51),
    ]

    judged = {v.path: v for v in verdicts(points)}

    assert (judged["flat"].smallest.size, judged["flat"].largest.size) == (100_000, 3_000_000)
    assert judged["flat"].ratio == TARGET
    assert judged["flat"].met
    assert round(judged["steep"].ratio, 2) == 1.51
    assert not judged["steep"].met


def test_a_path_measured_at_one_size_gets_no_verdict() -> None:
    assert verdicts([point("once", 100_000, 1.0), point("once", 100_000, 9.0)]) == []


def test_chunks_cover_every_record_once_in_order() -> None:
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    points = [point("a customer's payments, PostgreSQL", n, 1.0) for n in (10_000, 40_000)]
    points += [point("QueryLogs, PostgreSQL", n, 2.0) for n in (20_000, 80_000)]
    rates = [JobRate("backfill", "payments", n, n, 2 * n, 10.0) for n in (10_000, 40_000)]

    written = plot(points, rates, tmp_path / "curve.png")

    assert written.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
