"""Reporting: fairness and delivery metrics (:mod:`fpamm_opt.report.metrics`), comparisons, plots.

Metrics are pure pandas/NumPy on a run's stored tables; nothing here imports Pyomo.
"""

from __future__ import annotations
