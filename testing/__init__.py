"""Fixtures shared by the tests and the benchmarks: data made up to exercise the
product, not part of it (not installed with the package). Tests and benchmarks
run from the repository root, where this package is importable."""
