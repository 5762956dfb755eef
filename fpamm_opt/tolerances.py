"""Shared numerical tolerances and audit defaults (dependency-free: the CLI reads them at
import time without loading NumPy, pandas or a solver)."""

from __future__ import annotations

__all__ = ["DEFAULT_COLD_SAMPLE"]

#: Intervals the T3 cold re-solve checks by default, half of them scarce: at 100 scarce
#: intervals a 3% disagreement rate is caught in 95% of runs (1 - 0.97^100), in about 5 s
#: on IEEE-118; ``fpamm verify --cold-sample all`` re-solves every one.
DEFAULT_COLD_SAMPLE = 200
