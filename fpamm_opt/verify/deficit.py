"""Deficit replay: the stored deficits follow the recursion of the stored allocations.

Computed from the ``nodes`` table only (``t``, ``node``, ``tier``, ``demand_mw``,
``served_mw``, ``deficit_mwh``) and the interval length ``dt`` from the manifest
(:attr:`~fpamm_opt.verify.context.RunContext.interval_h`). The replay starts from
``D(0) = 0`` and applies MECHANISM.md section 3,

    ``D_i(t+1) = D_i(t) + (r_l(t) d_i(t) - x_i(t)) dt``,
    ``r_l(t) = sum_{j in l} x_j / sum_{j in l} d_j`` (1 for a tier without demand),

to every interval, held or cleared; ``deficit_mwh`` of interval ``t`` is ``D(t+1)``. A run
written before the deficit existed (no ``deficit_mwh`` column, or only nulls) is not
applicable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import pivot, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

__all__ = [
    "DEFICIT_ABS_TOL_MWH",
    "DEFICIT_REL_TOL",
    "STATEMENT_DEFICIT",
    "check_deficit_replay",
    "replay_deficit",
]

#: Tolerance of the replay: ``DEFICIT_ABS_TOL_MWH + DEFICIT_REL_TOL * C_i(t)`` per row, with
#: ``C_i(t) = sum_{tau<=t} d_i dt`` the node's requested energy so far (the scale of
#: its deficit; rounding adds about ``1e-16 d_i dt`` per interval).
DEFICIT_REL_TOL = 1e-9
DEFICIT_ABS_TOL_MWH = 1e-9

STATEMENT_DEFICIT = (
    "Thm 5 (deficit recursion): stored D(t+1) = D(t) + (r_l(t) d(t) - x(t)) dt from D(0) = 0 "
    "with the stored x, d and tiers, r_l the tier's served ratio, within "
    f"{DEFICIT_ABS_TOL_MWH:g} MWh + {DEFICIT_REL_TOL:g} x the node's requested energy"
)


def replay_deficit(
    served_mw: np.ndarray, demand_mw: np.ndarray, node_tier: np.ndarray, interval_h: float
) -> np.ndarray:
    """Deficits ``D(t+1)`` of every interval, replayed from ``D(0) = 0``.

    Parameters
    ----------
    served_mw, demand_mw : (T, n) arrays
        ``x`` and ``d`` of every interval and node (MW).
    node_tier : (n,) int array
        Tier of each node.
    interval_h : float
        ``dt`` (h).

    Returns
    -------
    (T, n) array
        Row ``t`` is the deficit after interval ``t`` (MWh).
    """
    x = np.asarray(served_mw, dtype=float)
    d = np.asarray(demand_mw, dtype=float)
    tier = np.asarray(node_tier)
    tiers, col = np.unique(tier, return_inverse=True)
    onehot = (col[:, None] == np.arange(tiers.size)[None, :]).astype(float)
    x_l, d_l = x @ onehot, d @ onehot
    r = np.ones_like(x_l)
    np.divide(x_l, d_l, out=r, where=d_l > 0)
    return np.cumsum((r[:, col] * d - x) * float(interval_h), axis=0)


def check_deficit_replay(run: RunData | str | Path) -> CheckResult:
    """The stored ``deficit_mwh`` equals the recursion of the stored ``x``, ``d`` and tiers.

    Returns
    -------
    CheckResult
        ``measured`` is the largest ratio ``|stored - replayed| / tolerance`` over the rows
        (``bound`` 1); not applicable on a run without the ``deficit_mwh`` column.
    """
    run = as_run(run)
    name = CheckName.DEFICIT_REPLAY
    nodes = run.table("nodes")
    if "deficit_mwh" not in nodes.columns or not bool(nodes["deficit_mwh"].notna().any()):
        return not_applicable(
            name,
            STATEMENT_DEFICIT,
            "the run recorded no deficit (written before nodes.deficit_mwh existed)",
        )
    require_columns(nodes, "nodes", ["tier"])
    t, node, a = pivot(
        nodes, "node", ["demand_mw", "served_mw", "deficit_mwh"], fill=np.nan, table="nodes"
    )
    dt = run.context.interval_h
    tier = nodes.drop_duplicates("node").set_index("node")["tier"].reindex(node).to_numpy()
    changed = nodes.groupby("node")["tier"].nunique()
    problems: list[str] = []
    if (changed > 1).any():
        problems.append(f"nodes change tier during the run: {changed[changed > 1].index.tolist()}")
    d, x, stored = a["demand_mw"], a["served_mw"], a["deficit_mwh"]
    gaps = ~(np.isfinite(d) & np.isfinite(x) & np.isfinite(stored))
    if gaps.any():
        ti, ni = np.argwhere(gaps)[0]
        problems.append(
            f"{int(gaps.sum())} (t, node) rows are missing or not finite; first t={t[ti]}, "
            f"node={node[ni]}"
        )
        d, x = np.nan_to_num(d), np.nan_to_num(x)
    replayed = replay_deficit(x, d, tier, dt)
    tol = DEFICIT_ABS_TOL_MWH + DEFICIT_REL_TOL * np.cumsum(np.abs(d), axis=0) * dt
    excess = np.nan_to_num(np.abs(stored - replayed) / tol, nan=np.inf)
    worst = float(excess.max(initial=0.0))
    ti, ni = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.size else (0, 0)
    if worst > 1.0:
        problems.append(
            f"deficit_mwh does not follow the recursion in {int((excess > 1).sum())} rows; "
            f"worst t={t[ti]}, node={node[ni]}: stored {stored[ti, ni]:.12g} MWh, replay "
            f"gives {replayed[ti, ni]:.12g} MWh (dt = {dt:g} h)"
        )
    if problems:
        return CheckResult(name, STATEMENT_DEFICIT, worst, 1.0, False, True, "; ".join(problems))
    largest = float(np.max(np.abs(replayed[-1]), initial=0.0)) if replayed.size else math.nan
    detail = (
        f"{stored.size} rows follow the recursion with dt = {dt:g} h (largest difference "
        f"{worst:.3g} x tolerance); largest final |D| {largest:.4g} MWh"
    )
    return CheckResult(name, STATEMENT_DEFICIT, worst, 1.0, True, True, detail)
