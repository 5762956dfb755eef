"""T5: delivery ratios converge to their contracted targets at rate ``O(1/√t)``; fairness spread.

T5 is judged on under-service only (MECHANISM.md §3 "Contracted target", §6):
``E(t) = max_i (F*_i(t) - F_i(t))⁺`` with ``F*_i`` the node's tier aggregate ratio
``F^agg_l(i)(t)`` (or the spec's tier target), contracted only for nodes that re-solves show
to be network-limited (:mod:`fpamm_opt.verify.evidence`); over-service is never a deficit.
Quantities: :mod:`fpamm_opt.verify.underservice`; the criteria and their calibration:
:mod:`fpamm_opt.verify.rate` and :mod:`fpamm_opt.verify.power`.

:func:`analyse_t5` runs the one-run criterion on the plain targets, then examines, one at a
time and worst first, only the nodes that fail it: their short intervals are re-solved, their
targets contracted where the network could not serve them, and the criterion re-applied. It
stops at the first examined node that still fails (the verdict is then FAIL whatever the
others show) and says which failing nodes were left unexamined.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fpamm_opt.errors import FpammError
from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.evidence import EvidenceSearch, NodeEvidence
from fpamm_opt.verify.panel import NodePanel, delivery_ratio, tier_delivery_ratio
from fpamm_opt.verify.rate import (
    ALPHA,
    WINDOW_START,
    OneRunVerdict,
    block_length,
    one_run_criterion,
)
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable
from fpamm_opt.verify.underservice import UnderService

STATEMENT_CONVERGENCE = (
    "Thm 5: every node's delivery ratio converges to its contracted target F*_i at rate "
    "O(1/√t), judged on under-service E(t) = max_i (F*_i(t) - F_i(t))⁺ (F* = the tier's "
    "aggregate ratio or the spec's target, contracted only where re-solves show the network "
    "could not serve the node): on one run, every node's gap G_i = (F*_i - F_i) C_i stays "
    f"within b_i σ_i √t for t in [T/20, T] (σ_i its noise scale; b_i the level a "
    f"random-walk gap crosses with probability {ALPHA:g} per run)"
)
STATEMENT_SPREAD = (
    "fairness of the limit (not a theorem): under-service spread max_{i in tier} "
    "(F^agg_tier(T) - F_i(T))⁺; with an equal-weight baseline run, FP-AMM's must be the "
    "smaller, or both within 0.001 (a network that leaves nothing to correct); the two-sided "
    "spread max |F_i(T) - F^agg_tier(T)| is reported beside it"
)
#: Both under-service spreads below this: nothing to correct, the check passes.
SPREAD_TOL = 1e-3


@dataclass(frozen=True, eq=False)
class T5Analysis:
    """T5 on one run: the criterion before and after contraction, and the evidence.

    Attributes
    ----------
    plain : UnderService
        Targets before contraction (the tier ratios or the spec's targets).
    contracted : UnderService
        Targets contracted with the evidence gathered.
    plain_verdict, verdict : OneRunVerdict
        The one-run criterion on each.
    evidence : dict
        :class:`NodeEvidence` per examined node (by column).
    unexamined : tuple of int
        Columns that failed the criterion but were not examined (the verdict was already FAIL).
    evidence_note : str
        Why no evidence could be gathered, when it could not.
    seconds : float
        Time spent in re-solves.
    """

    plain: UnderService
    contracted: UnderService
    plain_verdict: OneRunVerdict
    verdict: OneRunVerdict
    evidence: dict[int, NodeEvidence] = field(default_factory=dict)
    unexamined: tuple[int, ...] = ()
    evidence_note: str = ""
    seconds: float = 0.0

    @property
    def network_limited(self) -> list[NodeEvidence]:
        """Examined nodes whose targets were contracted."""
        return [e for e in self.evidence.values() if e.network_limited]

    @property
    def solves(self) -> int:
        return sum(e.solves for e in self.evidence.values())


def analyse_t5(run: RunData | str | Path, evidence: bool = True) -> T5Analysis:
    """The one-run T5 criterion with contracted targets (module docstring).

    Parameters
    ----------
    run : RunData or path
    evidence : bool
        Re-solve the failing nodes' short intervals (needs the network, the ``generators``
        and ``intervals`` tables); without it the targets are never contracted.
    """
    run = as_run(run)
    plain = UnderService.from_run(run)
    v0 = one_run_criterion(plain.gap_mw, plain.cuts, plain.tol_mw)
    if not v0.applicable or v0.passed:
        return T5Analysis(plain, plain, v0, v0)
    if not evidence:
        return T5Analysis(plain, plain, v0, v0, evidence_note="evidence search not requested")
    t0 = time.perf_counter()
    try:
        search = EvidenceSearch(run, plain)
    except (FpammError, KeyError, ValueError) as exc:
        note = f"no re-solves possible ({exc})"
        return T5Analysis(plain, plain, v0, v0, unexamined=tuple(v0.failing()), evidence_note=note)
    contraction = np.zeros_like(plain.demand_mw)
    found: dict[int, NodeEvidence] = {}
    current, verdict = plain, v0
    while True:
        todo = [int(c) for c in verdict.failing() if int(c) not in found]
        if not todo:
            break
        col = todo[0]
        ev = search.node(col)
        found[col] = ev
        if ev.network_limited:
            contraction[:, col] = ev.contraction_mw
            current = plain.contracted(contraction)
            verdict = one_run_criterion(current.gap_mw, current.cuts, current.tol_mw)
        if verdict.z_max[col] > verdict.thresholds[col]:
            break  # this node fails even with its evidence: the verdict is FAIL
    left = tuple(int(c) for c in verdict.failing() if int(c) not in found)
    return T5Analysis(plain, current, v0, verdict, found, left, seconds=time.perf_counter() - t0)


def interval_hours(run: RunData) -> float:
    """Interval length (hours) from the spec's ``scenario.interval_minutes`` (default 30)."""
    scen = (run.manifest.get("spec") or {}).get("scenario") or {}
    minutes = scen.get("interval_minutes", 30) if isinstance(scen, Mapping) else 30
    try:
        return float(minutes) / 60.0
    except (TypeError, ValueError):
        return 0.5


def _node_text(us: UnderService, col: int) -> str:
    return f"node {int(us.node[col])} (tier {int(us.tier[col])})"


def check_convergence(run: RunData | str | Path, analysis: T5Analysis | None = None) -> CheckResult:
    """T5 on one run: every node's standardized under-service ``Z_i <= b_i`` (module docstring).

    Parameters
    ----------
    run : RunData or path
    analysis : T5Analysis, optional
        A precomputed :func:`analyse_t5` of ``run`` (the batch verifier reuses it).

    Returns
    -------
    CheckResult
        ``measured`` = the largest ``Z_i`` relative to its bound (that node's ``max_t Z``),
        ``bound`` = its ``b_i``. The detail gives ``E(T)``, the worst node, the network-limited
        nodes with their evidence and what was re-solved.
    """
    run = as_run(run)
    name = CheckName.T5_CONVERGENCE
    a = analysis if analysis is not None else analyse_t5(run)
    v, us = a.verdict, a.contracted
    if not v.applicable:
        return not_applicable(
            name, STATEMENT_CONVERGENCE, f"too few intervals for one path: {v.reason}"
        )
    hours = interval_hours(run)
    e = us.error
    n_t = us.n_interval
    k0 = v.k0
    parts = [
        f"E(T)={e[-1]:.4g}, E(T/20)={e[k0]:.4g}; worst {_node_text(us, v.node)}: max Z "
        f"{v.statistic:.3g} at t={int(us.t[v.k])} (bound {v.threshold:.3g}; σ "
        f"{v.sigma[v.node]:.3g} MW, gap G(T)={max(us.gap_mw[-1, v.node], 0.0) * hours:.4g} MWh); "
        f"{v.blocks} blocks of >= {block_length(n_t)} intervals, "
        f"{v.n_nodes} nodes whose gap moves"
    ]
    sentences: list[str] = []
    if not v.passed:
        for col in v.failing():
            c = int(col)
            why = (
                f"{_node_text(us, c)} is under-served beyond the random-walk bound: max Z "
                f"{v.z_max[c]:.3g} > {v.thresholds[c]:.3g} (E_i(T)="
                f"{us.under_service[-1, c]:.4g})"
            )
            if c in a.evidence and not a.evidence[c].network_limited:
                why += "; re-solves show it is not network-limited"
            elif c in a.evidence:
                why += "; even with its target contracted by its evidence"
            sentences.append(why)
        fixed = np.isfinite(us.fixed_target)
        for tier in np.unique(us.tier[fixed]):
            members = np.flatnonzero(us.tier == tier)
            target = float(us.fixed_target[members[0]])
            got = float(us.served_mw[:, members].sum() / max(us.demand_mw[:, members].sum(), 1e-12))
            if got < target - 1e-3:
                sentences.append(
                    f"target F*={target:.3g} for tier {int(tier)} is not delivered: F(T)={got:.3g}"
                )
    if a.evidence:
        v0, p0 = a.plain_verdict, a.plain
        n_iv = sum(ev.short_intervals for ev in a.evidence.values())
        sentences.append(
            f"on the plain targets {_node_text(p0, v0.node)} had max Z {v0.statistic:.3g} > "
            f"{v0.threshold:.3g}; re-solved the short intervals of {len(a.evidence)} node(s) "
            f"that failed there, {n_iv} intervals, {a.solves} cold LPs ({a.seconds:.1f} s): "
            + "; ".join(ev.describe(hours) for ev in a.evidence.values())
        )
    if a.unexamined:
        sentences.append(
            "not examined (the verdict was already FAIL): "
            + ", ".join(_node_text(us, c) for c in a.unexamined)
        )
    if a.evidence_note:
        sentences.append(a.evidence_note)
    detail = "; ".join([*sentences, *parts]) if not v.passed else "; ".join([*parts, *sentences])
    return CheckResult(
        name, STATEMENT_CONVERGENCE, v.statistic, v.threshold, v.passed, True, detail
    )


def t5_summary(a: T5Analysis) -> dict[str, Any]:
    """Numbers of an analysis for reports: ``E(T)``, the worst node, the limited nodes."""
    us, v = a.contracted, a.verdict
    return {
        "applicable": bool(v.applicable),
        "passed": bool(v.passed),
        "statistic": float(v.statistic),
        "bound": float(v.threshold),
        "worst_node": int(us.node[v.node]) if v.node >= 0 else None,
        "error_final": float(us.error[-1]) if us.n_interval else math.nan,
        "network_limited": [ev.node for ev in a.network_limited],
        "window_start": WINDOW_START,
    }


def limiting_spread(panel: NodePanel) -> dict[int, float]:
    """``max_{i in l} |F_i(T) - F^agg_l(T)|`` per tier ``l`` (two-sided)."""
    if panel.n_interval == 0:
        return {}
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1]
    return {
        int(tier): float(np.max(np.abs(final[panel.tier == tier] - agg[j])))
        for j, tier in enumerate(panel.tiers)
    }


def under_service_spread(panel: NodePanel) -> dict[int, float]:
    """``max_{i in l} (F^agg_l(T) - F_i(T))⁺`` per tier ``l``."""
    if panel.n_interval == 0:
        return {}
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1]
    return {
        int(tier): float(max(np.max(agg[j] - final[panel.tier == tier]), 0.0))
        for j, tier in enumerate(panel.tiers)
    }


def _spread_text(panel: NodePanel) -> tuple[float, str]:
    """Overall under-service spread and a sentence with both spreads per tier."""
    under = under_service_spread(panel)
    both = limiting_spread(panel)
    overall = max(under.values())
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1]
    per = ", ".join(f"tier {k}: {v:.4g}" for k, v in under.items())
    text = f"under-service spread {overall:.4g} ({per}); two-sided {max(both.values()):.4g}"
    over = []
    for j, tier in enumerate(panel.tiers):
        if both[int(tier)] > under[int(tier)] + 1e-12:
            members = np.flatnonzero(panel.tier == tier)
            k = members[int(np.argmax(final[members] - agg[j]))]
            over.append(f"over-served node {int(panel.node[k])} (tier {int(tier)})")
    if over:
        text += " set by " + ", ".join(over)
    return overall, text


def check_fairness_spread(
    run: RunData | str | Path, baseline: RunData | str | Path | None = None
) -> CheckResult:
    """Fairness of the limit: the under-service spread (MECHANISM.md §6).

    Parameters
    ----------
    run : RunData or path
        The FP-AMM run.
    baseline : RunData or path, optional
        An equal-weight run on common random numbers; then the check passes only when the
        run's under-service spread is smaller than the baseline's, or both are within
        :data:`SPREAD_TOL`.

    Returns
    -------
    CheckResult
        ``measured`` = the run's under-service spread; ``bound`` = the baseline's (``nan``
        without one, and the check is informational).
    """
    run = as_run(run)
    name = CheckName.FAIRNESS_SPREAD
    panel = NodePanel.from_nodes(run.table("nodes"))
    if panel.n_interval == 0:
        return not_applicable(name, STATEMENT_SPREAD, "the run has no interval")
    overall, text = _spread_text(panel)
    if baseline is None:
        return CheckResult(
            name, STATEMENT_SPREAD, overall, math.nan, True, True,
            f"{text}; informational, no baseline given",
        )  # fmt: skip
    bpanel = NodePanel.from_nodes(as_run(baseline).table("nodes"))
    b_overall, b_text = _spread_text(bpanel) if bpanel.n_interval else (math.nan, "no interval")
    both_small = overall <= SPREAD_TOL and b_overall <= SPREAD_TOL
    passed = overall < b_overall or both_small
    if both_small:
        verdict = f"within {SPREAD_TOL:g} as is"
    else:
        verdict = "smaller than" if passed else "NOT smaller than"
    detail = f"{text}; {verdict} the baseline's {b_overall:.4g} (baseline: {b_text})"
    return CheckResult(name, STATEMENT_SPREAD, overall, b_overall, passed, True, detail)
