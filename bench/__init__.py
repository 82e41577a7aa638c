"""Benchmark harness: side-by-side measurements in one run, written to bench/results/."""
