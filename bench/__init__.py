"""Benchmarks: make bench; results in docs/benchmarks.md."""
