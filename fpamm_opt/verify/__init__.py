"""Theorem and feasibility checks computed from a run's stored tables only.

No Pyomo and no solver of the run: T3's cold re-solves use ``scipy.optimize.linprog``
(HiGHS) on arrays of :class:`~fpamm_opt.network.NetworkData`. Each check returns a
:class:`CheckResult`; :func:`verify_run` runs them all (``fpamm verify``).

=====================  ======================================================================
check                  function
=====================  ======================================================================
T1-invariance          :func:`check_memory_invariance`
T1-update              :func:`check_memory_update`
T1-contraction         :func:`check_memory_contraction`
T2-fixed-point         :func:`check_fixed_point`
T2-bound               :func:`check_fixed_point_bound`
T3-feasibility         :func:`check_dc_feasibility`
T3-cold-resolve        :func:`check_cold_resolve`
T4-tracking            :func:`check_tracking` (and :func:`tradeoff_table`)
T5-convergence         :func:`check_convergence` (and :func:`analyse_t5`: targets, evidence)
T5-replicated          :func:`check_replicated` (a batch's seeds; :func:`verify_batch`)
deficit-replay         :func:`check_deficit_replay`
fairness-spread        :func:`check_fairness_spread`
=====================  ======================================================================

The package is also callable: ``fpamm_opt.verify(run, ...)`` is :func:`verify_run` (a run
directory, a :class:`RunData`, or the :class:`~fpamm_opt.sim.run.SimulationResult` of
:func:`fpamm_opt.simulate`, which is one).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from fpamm_opt.verify.batch import check_replicated, verify_batch
from fpamm_opt.verify.context import (
    CostModel,
    NetworkSpec,
    RunContext,
    RunData,
    read_manifest,
    read_table,
)
from fpamm_opt.verify.convergence import (
    analyse_t5,
    check_convergence,
    check_fairness_spread,
    limiting_spread,
)
from fpamm_opt.verify.deficit import check_deficit_replay, replay_deficit
from fpamm_opt.verify.feasibility import ColdDCOPF, check_cold_resolve, check_dc_feasibility
from fpamm_opt.verify.fixed_point import check_fixed_point, check_fixed_point_bound, residual_ratios
from fpamm_opt.verify.memory import (
    check_memory_contraction,
    check_memory_invariance,
    check_memory_update,
)
from fpamm_opt.verify.result import CheckName, CheckResult, VerificationReport
from fpamm_opt.verify.runner import applicable_checks, select_checks, verify_run
from fpamm_opt.verify.tracking import check_tracking, lipschitz_estimate, tradeoff_table

__all__ = [
    "CheckName",
    "CheckResult",
    "ColdDCOPF",
    "CostModel",
    "NetworkSpec",
    "RunContext",
    "RunData",
    "VerificationReport",
    "analyse_t5",
    "applicable_checks",
    "check_cold_resolve",
    "check_convergence",
    "check_dc_feasibility",
    "check_deficit_replay",
    "check_fairness_spread",
    "check_fixed_point",
    "check_fixed_point_bound",
    "check_memory_contraction",
    "check_memory_invariance",
    "check_memory_update",
    "check_replicated",
    "check_tracking",
    "limiting_spread",
    "lipschitz_estimate",
    "read_manifest",
    "read_table",
    "replay_deficit",
    "residual_ratios",
    "select_checks",
    "tradeoff_table",
    "verify_batch",
    "verify_run",
]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`verify_run` (so ``fpamm_opt.verify(run)`` works)."""

    def __call__(self, run: Any, *args: Any, **kwargs: Any) -> VerificationReport:
        return verify_run(run, *args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
