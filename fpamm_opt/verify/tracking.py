"""T4: event-triggered execution keeps the allocation tracking error within ``L̂ θ``.

The trigger vector ``z(t) = (d/d_base, available/pmax, memory_before)`` is rebuilt from the
stored tables and the network, followed, when FP-AMM's weights read the deficit, by the
deficit level they read at the start of ``t`` (rebuilt from the stored ``deficit_mwh`` of
``t - 1`` and the demand before ``t``, as ``mechanism.weights.deficit_level`` computes it);
``r = served/demand`` (1 where there is no demand).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import bool_array, pivot, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

STATEMENT_TRACKING = (
    "Thm 4: with event-triggered execution (θ > 0) the tracking error of every audited held "
    "interval is at most L̂·θ (+ tol), L̂ the empirical Lipschitz constant of z -> r*"
)

#: ``||Δz||_inf`` below this is treated as zero (pair skipped).
_Z_EPS = 1e-12


@dataclass(frozen=True)
class LipschitzEstimate:
    """Empirical Lipschitz constant of ``z -> r*`` from consecutive executed intervals."""

    value: float  #: ``nan`` when no pair qualifies
    n_pairs: int
    t_a: int | None
    t_b: int | None


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 1 where ``den == 0`` (as the mechanism's trigger vector)."""
    den = np.broadcast_to(den, num.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), 1.0)


def trigger_arrays(run: RunData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t, z, r)``: interval ids, trigger vectors ``(T, 2n+g)``, served ratios ``(T, n)``."""
    net = run.network
    nodes = run.table("nodes")
    t, _, na = pivot(nodes, "node", ["demand_mw", "served_mw", "memory_before"], table="nodes")
    _, _, ga = pivot(run.table("generators"), "gen", ["available_mw"], table="generators")
    parts = [
        _ratio(na["demand_mw"], net.node_demand_mw),
        _ratio(ga["available_mw"], net.gen_pmax_mw),
        np.nan_to_num(na["memory_before"]),
    ]
    ctx = run.context
    if ctx.weights_read_deficit and "deficit_mwh" in nodes.columns:
        parts.append(_deficit_levels(run, nodes))
    z = np.hstack(parts)
    d = na["demand_mw"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d > 0, na["served_mw"] / np.where(d > 0, d, 1.0), 1.0)
    return t, z, r


def _deficit_levels(run: RunData, nodes: pd.DataFrame) -> np.ndarray:
    """The deficit level each interval's weights read, ``(T, n)`` in ``[0, 1]``.

    ``delta+(t) = max(D(t), 0) / sum_{tau<t} d dt`` (0 before any demand) with ``D(t)`` the
    stored ``deficit_mwh`` of ``t - 1`` (0 at the first interval); RELATIVE divides by the
    tier's ``max(max_j delta+_j, deficit_floor)``.
    """
    ctx = run.context
    _, node, a = pivot(nodes, "node", ["demand_mw", "deficit_mwh"], fill=0.0, table="nodes")
    tier_of = nodes.drop_duplicates("node").set_index("node")["tier"].reindex(node)
    _, tier = np.unique(tier_of.to_numpy(dtype=int), return_inverse=True)
    zero = np.zeros((1, node.size))
    deficit = np.vstack([zero, np.nan_to_num(a["deficit_mwh"][:-1])])
    requested = np.vstack([zero, np.cumsum(a["demand_mw"], axis=0)[:-1]]) * ctx.interval_h
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(requested > 0, np.maximum(deficit, 0.0) / requested, 0.0)
    if ctx.weight_form == "relative":
        norm = np.full((delta.shape[0], int(tier.max(initial=0)) + 1), ctx.deficit_floor)
        for k in range(norm.shape[1]):
            if np.any(tier == k):
                norm[:, k] = np.maximum(delta[:, tier == k].max(axis=1), ctx.deficit_floor)
        delta = delta / norm[:, tier]
    return np.clip(delta, 0.0, 1.0)


def lipschitz_estimate(
    t: np.ndarray, z: np.ndarray, r: np.ndarray, executed: np.ndarray, tier_order: np.ndarray
) -> LipschitzEstimate:
    """``max ||r(a)-r(b)||_inf / ||z(a)-z(b)||_inf`` over consecutive executed intervals.

    Pairs are consecutive in the sequence of executed intervals and share their tier order;
    pairs with ``||Δz||_inf <= 1e-12`` are skipped.
    """
    ex = np.flatnonzero(executed)
    if ex.size < 2:
        return LipschitzEstimate(math.nan, 0, None, None)
    a, b = ex[:-1], ex[1:]
    same = tier_order[a] == tier_order[b]
    dz = np.max(np.abs(z[b] - z[a]), axis=1)
    dr = np.max(np.abs(r[b] - r[a]), axis=1)
    ok = same & (dz > _Z_EPS)
    if not ok.any():
        return LipschitzEstimate(math.nan, 0, None, None)
    ratio = np.where(ok, dr / np.where(ok, dz, 1.0), -np.inf)
    k = int(np.argmax(ratio))
    return LipschitzEstimate(float(ratio[k]), int(ok.sum()), int(t[a[k]]), int(t[b[k]]))


def check_tracking(run: RunData | str | Path, tol: float = 1e-6) -> CheckResult:
    """T4: ``max e(t) <= L̂ θ + tol`` over audited held intervals.

    Audited held intervals: ``executed`` false and ``tracking_error`` finite. Applicable only
    when the manifest's trigger ``θ > 0``.

    Returns
    -------
    CheckResult
        ``measured`` = largest audited tracking error, ``bound`` = ``L̂ θ + tol``.
    """
    run = as_run(run)
    name = CheckName.T4_TRACKING
    theta = run.context.trigger_theta
    if theta <= 0:
        return not_applicable(name, STATEMENT_TRACKING, "trigger θ = 0 (every interval cleared)")
    intervals = run.table("intervals")
    require_columns(intervals, "intervals", ["t", "executed", "tracking_error"])
    t, z, r = trigger_arrays(run)
    iv = intervals.set_index("t").reindex(t)
    executed = bool_array(iv["executed"])
    err = iv["tracking_error"].to_numpy(dtype=float, na_value=np.nan)
    orders = (
        iv["tier_order"].astype(object).where(iv["tier_order"].notna(), "").astype(str).to_numpy()
        if "tier_order" in iv.columns
        else np.full(t.size, "")
    )
    audited = ~executed & np.isfinite(err)
    if not audited.any():
        return not_applicable(
            name,
            STATEMENT_TRACKING,
            f"no audited held interval ({int((~executed).sum())} held, audit off or sparse)",
        )
    lip = lipschitz_estimate(t, z, r, executed, orders)
    if not math.isfinite(lip.value):
        return not_applicable(
            name,
            STATEMENT_TRACKING,
            "L̂ cannot be estimated: no two consecutive executed intervals with the same tier "
            "order and different z",
        )
    bound = lip.value * theta + tol
    k = int(np.argmax(np.where(audited, err, -np.inf)))
    measured = float(err[k])
    n_bad = int((audited & (err > bound)).sum())
    passed = n_bad == 0
    base = (
        f"L̂={lip.value:.4g} from {lip.n_pairs} executed pairs (max at t={lip.t_a}->{lip.t_b}), "
        f"θ={theta:g}; {int(audited.sum())} audited of {int((~executed).sum())} held intervals"
    )
    if passed:
        detail = f"{base}; max tracking error {measured:.4g} at t={t[k]}"
    else:
        detail = (
            f"tracking error above L̂·θ+tol={bound:.4g} in {n_bad} held intervals; worst "
            f"{measured:.4g} at t={t[k]}; {base}"
        )
    return CheckResult(name, STATEMENT_TRACKING, measured, bound, passed, True, detail)


def tradeoff_table(runs: Iterable[RunData | str | Path]) -> pd.DataFrame:
    """The computation-fidelity trade-off over a sweep of ``θ``.

    Parameters
    ----------
    runs : iterable of RunData or run directories
        Runs of the same scenario at different trigger thresholds.

    Returns
    -------
    DataFrame
        One row per run, sorted by ``theta``: ``theta``, ``fraction_solved`` (executed
        intervals / intervals), ``max_tracking_error`` (over audited intervals, ``nan`` when
        none), ``n_intervals``, ``n_audited``, ``run``.
    """
    rows = []
    for item in runs:
        run = as_run(item)
        iv = run.table("intervals")
        n = len(iv)
        executed = bool_array(iv["executed"]) if "executed" in iv.columns else np.ones(n, bool)
        err = (
            iv["tracking_error"].to_numpy(dtype=float, na_value=np.nan)
            if "tracking_error" in iv.columns
            else np.full(n, np.nan)
        )
        fin = np.isfinite(err)
        rows.append(
            {
                "theta": run.context.trigger_theta,
                "fraction_solved": float(executed.mean()) if n else math.nan,
                "max_tracking_error": float(err[fin].max()) if fin.any() else math.nan,
                "n_intervals": n,
                "n_audited": int(fin.sum()),
                "run": str(run.path) if run.path is not None else "",
            }
        )
    cols = ["theta", "fraction_solved", "max_tracking_error", "n_intervals", "n_audited", "run"]
    return (
        pd.DataFrame(rows, columns=cols).sort_values("theta", kind="stable").reset_index(drop=True)
    )
