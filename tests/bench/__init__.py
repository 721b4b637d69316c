"""Benchmarks: ``nox -s bench`` (``python -m tests.bench``). Not tests: they measure."""
