"""Benchmarks: scripts that print figures (`make bench`). `python -m benchmarks.run --tiny` runs
every part once at a tiny size, as the test suite does, so that a change that breaks a benchmark
fails CI; the figures of a tiny run mean nothing."""

import os

TINY_ENV = "MOESTATS_BENCH_TINY"


def tiny() -> bool:
    """Is this a tiny run (every part at a size that takes seconds)?"""
    return os.environ.get(TINY_ENV) == "1"
