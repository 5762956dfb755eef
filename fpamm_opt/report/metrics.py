"""Fairness and delivery metrics of MECHANISM.md section 6, on a run's stored tables.

Pure pandas/NumPy: the ``nodes`` table is pivoted once into ``(T, n_node)`` arrays
(:class:`~fpamm_opt.verify.panel.NodePanel`) and every metric is vectorised over them, so a run
of ``T = 5000`` intervals and 100 nodes takes milliseconds.

Definitions
-----------
- ``F_i(t) = Σ_{τ<=t} x_i / Σ_{τ<=t} d_i`` (cumulative *through* ``t``; 1 while nothing was
  requested); tier aggregate ``F^agg_l(t)`` = tier energy served / requested.
- Fairness error ``e_i(t) = |F_i(t) - F^agg_{tier(i)}(t)|``.
- Weak bus (MECHANISM.md section 6): the most *under-served* node of a (baseline) run, lowest
  ``F_i(T) - F^agg_l(T)``, or named in the spec; the node with the largest absolute final error
  (often an over-served one no weighting can help) is reported beside it.
- Limiting under-service: ``max_i (F^agg_l(T) - F_i(T))^+``.
- Peak weak-bus error: ``max e_weak(t)`` over scarce intervals after the burn-in (default:
  through the end of the first scarcity window). Reduction: ``1 - peak_FP / peak_EW``.
- Limiting spread: ``max_{i in l} |F_i(T) - F^agg_l(T)|`` per tier, and the largest of them.
- Feasible fraction: share of intervals whose ``status`` says their allocation is a verified
  point of ``X(t)`` (``optimal``, ``held``, ``retried``, ``solve-error``; in runs of manifest
  versions 1-3, a status that starts with ``optimal``).
- Shortfall distribution (LMP baseline): each node's share of the total shed energy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.types import status_verified
from fpamm_opt.verify.panel import (
    NodePanel,
    bool_array,
    delivery_ratio,
    fairness_error,
    tier_delivery_ratio,
)

__all__ = [
    "FairnessSpread",
    "NodePanel",
    "PeakError",
    "ShortfallDistribution",
    "WeakBusComparison",
    "as_panel",
    "burn_in_end",
    "compare_weak_bus",
    "cumulative_delivery_ratio",
    "delivery_ratio",
    "fairness_error",
    "feasible_fraction",
    "largest_error_node",
    "limiting_spread",
    "limiting_under_service",
    "max_fairness_error",
    "node_delivery_series",
    "peak_weak_bus_error",
    "reduction",
    "shortfall_distribution",
    "tier_delivery_ratio",
    "underserved_node",
    "weak_node",
]


def as_panel(nodes: NodePanel | pd.DataFrame) -> NodePanel:
    """A :class:`NodePanel` from the ``nodes`` table (or the panel itself)."""
    return nodes if isinstance(nodes, NodePanel) else NodePanel.from_nodes(nodes)


def cumulative_delivery_ratio(nodes: NodePanel | pd.DataFrame) -> pd.DataFrame:
    """``F_i(t)`` as a DataFrame indexed by ``t`` with one column per node."""
    panel = as_panel(nodes)
    return pd.DataFrame(
        delivery_ratio(panel),
        index=pd.Index(panel.t, name="t"),
        columns=pd.Index(panel.node, name="node"),
    )


def max_fairness_error(nodes: NodePanel | pd.DataFrame) -> np.ndarray:
    """``max_i e_i(t)`` per interval, shape ``(T,)``."""
    panel = as_panel(nodes)
    e = fairness_error(panel)
    return e.max(axis=1) if e.shape[1] else np.zeros(panel.n_interval)


def weak_node(nodes: NodePanel | pd.DataFrame, named: int | None = None) -> int:
    """The weak bus: ``named``, else the most under-served node (:func:`underserved_node`).

    Parameters
    ----------
    nodes : NodePanel or DataFrame
        The run that defines it (the equal-weight baseline in the paper's comparison).
    named : int, optional
        A node id named in the spec; checked to exist.

    Raises
    ------
    InputError
        When ``named`` is not a node of the run, or the run has no interval.
    """
    panel = as_panel(nodes)
    if named is not None:
        if int(named) not in set(panel.node.tolist()):
            raise InputError(f"weak node {named} is not a node of the run")
        return int(named)
    return underserved_node(panel)


def _final_gap(panel: NodePanel) -> np.ndarray:
    """``F^agg_{tier(i)}(T) - F_i(T)`` per node (positive: under-served)."""
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1][np.searchsorted(panel.tiers, panel.tier)]
    return agg - final


def underserved_node(nodes: NodePanel | pd.DataFrame) -> int:
    """The most under-served node: the largest final ``F^agg_{tier(i)}(T) - F_i(T)``.

    MECHANISM.md section 6's weak bus. Unlike :func:`largest_error_node` this ignores nodes
    served *above* their tier's ratio, which no weighting can bring down when they sit next to
    generation stranded behind a congested corridor.

    Raises
    ------
    InputError
        When the run has no interval.
    """
    panel = as_panel(nodes)
    if panel.n_interval == 0:
        raise InputError("the run has no interval: no weak bus")
    return int(panel.node[int(np.argmax(_final_gap(panel)))])


def largest_error_node(nodes: NodePanel | pd.DataFrame) -> int:
    """The node with the largest final fairness error ``|F_i(T) - F^agg_{tier(i)}(T)|``.

    Reported beside the weak bus (the second row of MECHANISM.md section 6).

    Raises
    ------
    InputError
        When the run has no interval.
    """
    panel = as_panel(nodes)
    if panel.n_interval == 0:
        raise InputError("the run has no interval: no largest-error node")
    final = fairness_error(panel)[-1]
    return int(panel.node[int(np.argmax(final))])


def limiting_under_service(nodes: NodePanel | pd.DataFrame) -> float:
    """``max_i (F^agg_{tier(i)}(T) - F_i(T))^+`` (``nan`` for a run without intervals)."""
    panel = as_panel(nodes)
    if panel.n_interval == 0 or panel.node.size == 0:
        return math.nan
    return float(max(np.max(_final_gap(panel)), 0.0))


def _sorted_intervals(intervals: pd.DataFrame) -> pd.DataFrame:
    if "t" not in intervals.columns or "scarce" not in intervals.columns:
        raise InputError("the intervals table needs columns t and scarce")
    return intervals.sort_values("t", kind="stable").reset_index(drop=True)


def burn_in_end(intervals: pd.DataFrame, burn_in: int | None = None) -> int:
    """Number of leading intervals excluded by the burn-in.

    Parameters
    ----------
    intervals : DataFrame
        Columns ``t``, ``scarce`` and, when present, ``window`` (scarcity-window id).
    burn_in : int, optional
        An explicit number of leading intervals. Default: through the end of the first
        scarcity window (the first window id; without a ``window`` column, the first run of
        consecutive scarce intervals); 0 when there is no scarcity.
    """
    if burn_in is not None:
        if burn_in < 0:
            raise InputError(f"burn_in must be >= 0, got {burn_in}")
        return int(burn_in)
    iv = _sorted_intervals(intervals)
    if "window" in iv.columns and iv["window"].notna().any():
        w = iv["window"]
        first = w[w.notna()].iloc[0]
        return int(np.flatnonzero((w == first).fillna(False).to_numpy(dtype=bool))[-1]) + 1
    scarce = bool_array(iv["scarce"])
    if not scarce.any():
        return 0
    start = int(np.argmax(scarce))
    after = np.flatnonzero(~scarce[start:])
    return start + (int(after[0]) if after.size else scarce.size - start)


@dataclass(frozen=True)
class PeakError:
    """Peak fairness error of one node over the scarce intervals after the burn-in.

    ``value`` is ``nan`` (and ``t`` is ``None``) when no scarce interval is left.
    """

    node: int
    value: float
    t: int | None
    burn_in: int  #: leading intervals excluded
    n_intervals: int  #: scarce intervals after the burn-in


def peak_weak_bus_error(
    nodes: NodePanel | pd.DataFrame,
    intervals: pd.DataFrame,
    node: int | None = None,
    burn_in: int | None = None,
) -> PeakError:
    """``max e_node(t)`` over scarce intervals after the burn-in.

    Parameters
    ----------
    nodes : NodePanel or DataFrame
        The run measured.
    intervals : DataFrame
        Its ``intervals`` table (``t``, ``scarce``, ``window``).
    node : int, optional
        The node (default: this run's own weak bus, see :func:`weak_node`).
    burn_in : int, optional
        See :func:`burn_in_end`.
    """
    panel = as_panel(nodes)
    node = weak_node(panel, node)
    iv = _sorted_intervals(intervals)
    if not np.array_equal(iv["t"].to_numpy(), panel.t):
        raise InputError("the intervals and nodes tables cover different intervals")
    skip = burn_in_end(iv, burn_in)
    mask = bool_array(iv["scarce"])
    mask[:skip] = False
    col = int(np.flatnonzero(panel.node == node)[0])
    e = fairness_error(panel)[:, col]
    if not mask.any():
        return PeakError(node, math.nan, None, skip, 0)
    k = int(np.argmax(np.where(mask, e, -np.inf)))
    return PeakError(node, float(e[k]), int(panel.t[k]), skip, int(mask.sum()))


def reduction(peak_fp: float, peak_ew: float) -> float:
    """``1 - peak_FP / peak_EW`` (``nan`` when the baseline's peak is 0 or undefined)."""
    if not (math.isfinite(peak_ew) and peak_ew > 0 and math.isfinite(peak_fp)):
        return math.nan
    return 1.0 - peak_fp / peak_ew


@dataclass(frozen=True)
class WeakBusComparison:
    """Peak weak-bus error of FP-AMM against the equal-weight baseline."""

    node: int
    peak_fp: PeakError
    peak_ew: PeakError
    reduction: float


def compare_weak_bus(
    fp_nodes: NodePanel | pd.DataFrame,
    ew_nodes: NodePanel | pd.DataFrame,
    intervals: pd.DataFrame,
    named: int | None = None,
    burn_in: int | None = None,
) -> WeakBusComparison:
    """Weak bus from the baseline (or ``named``), both peaks and the reduction.

    ``intervals`` (scarce flags, windows) is the FP-AMM run's; on common random numbers the
    baseline has the same scarcity windows.
    """
    ew = as_panel(ew_nodes)
    fp = as_panel(fp_nodes)
    node = weak_node(ew, named)
    p_fp = peak_weak_bus_error(fp, intervals, node, burn_in)
    p_ew = peak_weak_bus_error(ew, intervals, node, burn_in)
    return WeakBusComparison(node, p_fp, p_ew, reduction(p_fp.value, p_ew.value))


@dataclass(frozen=True)
class FairnessSpread:
    """Limiting spread ``max_{i in l} |F_i(T) - F^agg_l(T)|`` per tier and overall."""

    per_tier: Mapping[int, float]
    overall: float


def limiting_spread(nodes: NodePanel | pd.DataFrame) -> FairnessSpread:
    """Spread of the final delivery ratios around their tier aggregates."""
    panel = as_panel(nodes)
    if panel.n_interval == 0:
        return FairnessSpread({}, math.nan)
    final = delivery_ratio(panel)[-1]
    agg = tier_delivery_ratio(panel)[-1]
    per = {
        int(tier): float(np.max(np.abs(final[panel.tier == tier] - agg[j])))
        for j, tier in enumerate(panel.tiers)
    }
    return FairnessSpread(per, max(per.values()))


def feasible_fraction(intervals: pd.DataFrame) -> float:
    """Share of intervals whose ``status`` says the allocation is a verified point of ``X(t)``
    (:func:`~fpamm_opt.mechanism.types.status_verified`; ``nan`` when empty)."""
    if "status" not in intervals.columns:
        raise InputError("the intervals table has no status column")
    if len(intervals) == 0:
        return math.nan
    return float(intervals["status"].map(status_verified).to_numpy(dtype=bool).mean())


@dataclass(frozen=True)
class ShortfallDistribution:
    """Where shedding fell: each node's share of the total shed energy.

    Attributes
    ----------
    share : Series
        Indexed by node; sums to 1 (all 0 when nothing was shed).
    quantiles : dict
        ``{q: quantile of share across nodes}``.
    total_shed_mw : float
        ``Σ_t Σ_i (d - x)`` (MW summed over intervals).
    max_node : int or None
        Node with the largest share.
    max_share : float
    """

    share: pd.Series
    quantiles: dict[float, float]
    total_shed_mw: float
    max_node: int | None
    max_share: float


def shortfall_distribution(
    nodes: NodePanel | pd.DataFrame,
    quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9),
) -> ShortfallDistribution:
    """Per-node share of the total shed energy and its quantiles (the LMP baseline's picture)."""
    panel = as_panel(nodes)
    shed = np.clip(panel.demand_mw - panel.served_mw, 0.0, None).sum(axis=0)
    total = float(shed.sum())
    share = shed / total if total > 0 else np.zeros_like(shed)
    s = pd.Series(share, index=pd.Index(panel.node, name="node"), name="share")
    qs = {float(q): float(np.quantile(share, q)) for q in quantiles} if share.size else {}
    k = int(np.argmax(share)) if share.size and total > 0 else None
    return ShortfallDistribution(
        share=s,
        quantiles=qs,
        total_shed_mw=total,
        max_node=None if k is None else int(panel.node[k]),
        max_share=float(share[k]) if k is not None else 0.0,
    )


# ---------------------------------------------------------------------------------------------
# Additions for comparisons and figures (fpamm_opt.report.compare / figures / summary).
# ---------------------------------------------------------------------------------------------
def node_delivery_series(
    nodes: NodePanel | pd.DataFrame, node: int
) -> tuple[np.ndarray, np.ndarray]:
    """``F_node(t)`` and its tier's aggregate ``F^agg(t)``, each of shape ``(T,)``.

    Raises
    ------
    InputError
        When ``node`` is not a node of the run.
    """
    panel = as_panel(nodes)
    hit = np.flatnonzero(panel.node == int(node))
    if hit.size == 0:
        raise InputError(f"node {node} is not a node of the run")
    col = int(hit[0])
    tier_col = int(np.searchsorted(panel.tiers, panel.tier[col]))
    return delivery_ratio(panel)[:, col], tier_delivery_ratio(panel)[:, tier_col]
