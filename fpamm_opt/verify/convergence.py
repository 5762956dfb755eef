"""T5: delivery ratios converge to their contracted targets at rate ``O(1/√t)``; fairness spread.

``F_i(t)`` is recomputed from ``nodes.served_mw`` and ``nodes.demand_mw`` (cumulative through
``t``). ``F*_i`` is the spec's target of node ``i``'s tier when one is set, otherwise the run's
own limit estimate ``F_i(T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import (
    DecayFit,
    NodePanel,
    cumulative_ratio,
    decay_fit,
    delivery_ratio,
    tier_delivery_ratio,
)
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

STATEMENT_CONVERGENCE = (
    "Thm 5: every node's delivery ratio converges to its contracted target F*_i at rate "
    "O(1/√t): E(t) = max_i |F_i(t) - F*_i| over t in [T/20, T/2] has a fitted log-log slope "
    "<= -0.4 and E(T/2) <= 2 E(T/20)/√10"
)
STATEMENT_SPREAD = (
    "fairness of the limit (not a theorem): spread max_{i in tier} |F_i(T) - F^agg_tier(T)|; "
    "with a baseline run, FP-AMM must have the smaller spread"
)

#: Required fitted slope.
SLOPE_BOUND = -0.4
#: Final gap (absolute) above which a tier's target is reported as not delivered.
UNDELIVERED_GAP = 1e-3


def node_targets(panel: NodePanel, run: RunData) -> tuple[np.ndarray, bool]:
    """``F*_i`` per node and whether any came from a spec target."""
    final = delivery_ratio(panel)[-1]
    target = final.copy()
    any_spec = False
    for tier in panel.tiers:
        v = run.context.target_of_tier(int(tier))
        if v is not None:
            target[panel.tier == tier] = v
            any_spec = True
    return target, any_spec


@dataclass(frozen=True)
class T5Verdict:
    """The T5 criterion applied to one error series."""

    fit: DecayFit
    slope_ok: bool  #: fitted slope finite and ``<= -0.4``
    ratio_bound: float  #: ``2 E(T/20) / √10``
    ratio_ok: bool  #: ``E(T/2) <= ratio_bound``

    @property
    def passed(self) -> bool:
        return self.slope_ok and self.ratio_ok


def t5_criterion(error: np.ndarray) -> T5Verdict:
    """The T5 criterion on an error series ``E(1..T)``: slope ``<= -0.4`` on ``[T/20, T/2]``
    and ``E(T/2) <= 2 E(T/20) / √10`` (also used by :mod:`fpamm_opt.verify.power`)."""
    fit = decay_fit(error)
    ratio_bound = 2.0 * fit.e_lo / math.sqrt(10.0)
    return T5Verdict(
        fit,
        bool(math.isfinite(fit.slope) and fit.slope <= SLOPE_BOUND),
        ratio_bound,
        bool(fit.e_hi <= ratio_bound),
    )


def system_fit(panel: NodePanel) -> T5Verdict:
    """T5's criterion on the system-wide ratio ``F_sys(t) = Σ_i Σ_τ x_i / Σ_i Σ_τ d_i``.

    No allocation rule moves ``F_sys`` much: every rule serves what the network can deliver,
    so the system's served energy is set by the scenario. ``F_sys(t) - F_sys(T)`` is (up to
    the drift of demand shares) a demand-weighted mean of the nodes' ``F_i(t) - F_i(T)``, so
    ``|F_sys(t) - F_sys(T)|`` sits below ``E(t)`` with ``F* = F_i(T)``. When it fails the
    criterion, the scenario's own scarcity does not settle at the ``1/√t`` pace over the
    window (a pointwise lower bound does not fix the slope of ``E``, so a run may still pass).
    """
    f = cumulative_ratio(panel.served_mw.sum(axis=1), panel.demand_mw.sum(axis=1))
    return t5_criterion(np.abs(f - f[-1]) if f.size else f)


def check_convergence(run: RunData | str | Path) -> CheckResult:
    """T5: fitted slope ``<= -0.4`` and ``E(T/2) <= 2 E(T/20) / √10``.

    Returns
    -------
    CheckResult
        ``measured`` = fitted slope, ``bound`` = -0.4. When failing with spec targets, the
        detail names every tier whose target is not delivered at ``T``.
    """
    run = as_run(run)
    name = CheckName.T5_CONVERGENCE
    panel = NodePanel.from_nodes(run.table("nodes"))
    n_t = panel.n_interval
    f = delivery_ratio(panel)
    target, from_spec = node_targets(panel, run)
    err = np.max(np.abs(f - target[None, :]), axis=1) if n_t else np.zeros(0)
    verdict = t5_criterion(err)
    fit, passed = verdict.fit, verdict.passed
    if fit.k_hi - fit.k_lo + 1 < 3:
        return not_applicable(name, STATEMENT_CONVERGENCE, f"too few intervals (T={n_t})")
    what = "spec tier targets" if from_spec else "the run's own limits F_i(T)"
    ratio_bound = verdict.ratio_bound
    numbers = (
        f"slope {fit.slope:.3g} over t in [{fit.k_lo}, {fit.k_hi}] ({fit.n_points} points); "
        f"E(T/20)={fit.e_lo:.4g}, E(T/2)={fit.e_hi:.4g} (bound 2E(T/20)/√10={ratio_bound:.4g}); "
        f"F* = {what}"
    )
    if fit.n_points < 2 and fit.e_hi == 0.0:
        return CheckResult(
            name,
            STATEMENT_CONVERGENCE,
            math.nan,
            SLOPE_BOUND,
            True,
            True,
            f"E(t) = 0 over the window: every node is at its target; F* = {what}",
        )
    if not from_spec:
        sys_verdict = system_fit(panel)
        sys_fit = sys_verdict.fit
        numbers += (
            f"; system-wide ratio (set by the scenario, not the allocation): slope "
            f"{sys_fit.slope:.3g}, E_sys(T/20)={sys_fit.e_lo:.4g}, E_sys(T/2)={sys_fit.e_hi:.4g}"
        )
        if not sys_verdict.passed:
            numbers += (
                " -- it fails the same criterion on this path: over this window the scenario's "
                "own scarcity does not settle at the 1/√t pace, whatever the allocation "
                "(docs/verification.md, 'T5 on one path')"
            )
    if passed:
        detail = numbers
    else:
        why = []
        if not verdict.slope_ok:
            why.append(f"E(t) does not decay fast enough (slope {fit.slope:.3g} > {SLOPE_BOUND})")
        if not verdict.ratio_ok:
            why.append(f"E(T/2)={fit.e_hi:.4g} is above 2E(T/20)/√10={ratio_bound:.4g}")
        sentences = []
        if from_spec:
            agg = tier_delivery_ratio(panel)[-1]
            final = f[-1]
            for j, tier in enumerate(panel.tiers):
                v = run.context.target_of_tier(int(tier))
                if v is None:
                    continue
                members = np.flatnonzero(panel.tier == tier)
                gaps = np.abs(final[members] - v)
                if abs(agg[j] - v) > UNDELIVERED_GAP or gaps.max() > UNDELIVERED_GAP:
                    w = members[int(np.argmax(gaps))]
                    sentences.append(
                        f"target F*={v:.3g} for tier {int(tier)} is not delivered: "
                        f"F(T)={agg[j]:.3g} (worst node {int(panel.node[w])}: "
                        f"F(T)={final[w]:.3g})"
                    )
        detail = "; ".join([*sentences, *why, numbers])
    return CheckResult(name, STATEMENT_CONVERGENCE, fit.slope, SLOPE_BOUND, passed, True, detail)


def limiting_spread(panel: NodePanel) -> dict[int, float]:
    """``max_{i in l} |F_i(T) - F^agg_l(T)|`` per tier ``l``."""
    if panel.n_interval == 0:
        return {}
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1]
    return {
        int(tier): float(np.max(np.abs(final[panel.tier == tier] - agg[j])))
        for j, tier in enumerate(panel.tiers)
    }


def check_fairness_spread(
    run: RunData | str | Path, baseline: RunData | str | Path | None = None
) -> CheckResult:
    """Fairness of the limit: the spread per tier and overall (informational).

    Parameters
    ----------
    run : RunData or path
        The FP-AMM run.
    baseline : RunData or path, optional
        An equal-weight run on common random numbers; then the check passes only when the
        run's overall spread is smaller than the baseline's.

    Returns
    -------
    CheckResult
        ``measured`` = overall spread of ``run``; ``bound`` = the baseline's (``nan`` without).
    """
    run = as_run(run)
    name = CheckName.FAIRNESS_SPREAD
    spread = limiting_spread(NodePanel.from_nodes(run.table("nodes")))
    if not spread:
        return not_applicable(name, STATEMENT_SPREAD, "the run has no interval")
    overall = max(spread.values())
    per_tier = ", ".join(f"tier {k}: {v:.4g}" for k, v in spread.items())
    if baseline is None:
        return CheckResult(
            name,
            STATEMENT_SPREAD,
            overall,
            math.nan,
            True,
            True,
            f"spread {overall:.4g} ({per_tier}); informational, no baseline given",
        )
    base = as_run(baseline)
    bspread = limiting_spread(NodePanel.from_nodes(base.table("nodes")))
    b_overall = max(bspread.values()) if bspread else math.nan
    passed = overall < b_overall or (overall <= 1e-12 and b_overall <= 1e-12)
    verdict = "smaller than" if passed else "NOT smaller than"
    detail = (
        f"spread {overall:.4g} ({per_tier}) is {verdict} the baseline's {b_overall:.4g} "
        f"({', '.join(f'tier {k}: {v:.4g}' for k, v in bspread.items())})"
    )
    return CheckResult(name, STATEMENT_SPREAD, overall, b_overall, passed, True, detail)
