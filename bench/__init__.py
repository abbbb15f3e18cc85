"""Benchmarks (not part of the test run): see docs/BENCHMARKS.md."""
