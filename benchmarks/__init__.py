"""Benchmark scripts: `python -m benchmarks.<name>`; each prints a table and writes results/*.json."""
