"""T2: the intra-interval clearing operator contracts (``q̂_t < 1``, ``q̂_t <= q_bound_t``).

Computed from the ``iterations`` table (``t, m, residual``) and the ``intervals`` table
(``t, demand_mw, q_hat, q_bound`` and, when present, ``q_bound_applies``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import bool_array, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

STATEMENT_FIXED_POINT = (
    "Thm 2: in every interval with >= 3 fixed-point iterations the residuals fall "
    "geometrically: q̂_t = max r_{m+1}/r_m (over r_m above the numerical floor) < 1, and the "
    "stored q_hat equals the one computed from the stored residuals"
)
STATEMENT_BOUND = "Thm 2: where the explicit bound applies, q̂_t <= q_bound_t"

#: Minimum number of residual rows for an interval to be checked.
MIN_ITERATIONS = 3


@dataclass(frozen=True, eq=False)
class ResidualRatios:
    """Per-interval contraction estimates from the stored residuals.

    Attributes
    ----------
    table : DataFrame
        Indexed by ``t``: ``n_rows`` (residual rows), ``q_hat`` (recomputed, ``nan`` when no
        ratio counts), ``floor`` (MW), ``nonfinite`` (some residual is not finite).
    """

    table: pd.DataFrame


def residual_ratios(
    iterations: pd.DataFrame, intervals: pd.DataFrame, residual_floor: float = 1e-6
) -> ResidualRatios:
    """``q̂_t`` from the residuals: largest ``r_{m+1}/r_m`` over ``r_m > floor_t``.

    ``floor_t = residual_floor · demand_mw(t)`` (total demand of the interval, MW).
    """
    require_columns(iterations, "iterations", ["t", "m", "residual"])
    require_columns(intervals, "intervals", ["t", "demand_mw"])
    it = iterations[["t", "m", "residual"]].sort_values(["t", "m"], kind="stable")
    tt = it["t"].to_numpy()
    r = it["residual"].to_numpy(dtype=float, na_value=np.nan)
    demand = intervals.set_index("t")["demand_mw"].astype(float)
    floor = residual_floor * demand.reindex(tt).to_numpy()
    floor = np.nan_to_num(floor, nan=0.0)
    same = np.r_[False, tt[1:] == tt[:-1]]
    prev = np.r_[np.nan, r[:-1]]
    counts = same & (prev > floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(counts, r / np.where(counts, prev, 1.0), np.nan)
    df = pd.DataFrame({"t": tt, "ratio": ratio, "nonfinite": ~np.isfinite(r), "floor": floor})
    g = df.groupby("t", sort=True)
    table = pd.DataFrame(
        {
            "n_rows": g.size(),
            "q_hat": g["ratio"].max(),  # NaN-skipping: NaN only when no ratio counts
            "floor": g["floor"].first(),
            "nonfinite": g["nonfinite"].any(),
        }
    )
    return ResidualRatios(table=table)


def _checked(run: RunData) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    iterations = run.table("iterations")
    intervals = run.table("intervals")
    if len(iterations) == 0:
        return None
    rr = residual_ratios(iterations, intervals, run.context.residual_floor).table
    rr = rr[rr["n_rows"] >= MIN_ITERATIONS]
    if rr.empty:
        return None
    return rr, intervals.set_index("t")


def check_fixed_point(run: RunData | str | Path, consistency_tol: float = 1e-9) -> CheckResult:
    """T2: ``q̂_t < 1`` in every interval with at least three residual rows.

    Also requires the stored ``intervals.q_hat`` to equal the recomputed ``q̂_t`` (relative
    ``consistency_tol``) wherever a ratio counts, and every residual to be finite.

    Returns
    -------
    CheckResult
        ``measured`` = largest ``q̂_t``, ``bound`` = 1.
    """
    run = as_run(run)
    name = CheckName.T2_FIXED_POINT
    got = _checked(run)
    if got is None:
        return not_applicable(
            name, STATEMENT_FIXED_POINT, f"no interval needed {MIN_ITERATIONS} or more iterations"
        )
    rr, iv = got
    q = rr["q_hat"].to_numpy(dtype=float)
    problems: list[str] = []
    if rr["nonfinite"].any():
        bad = rr.index[rr["nonfinite"].to_numpy()]
        problems.append(f"non-finite residuals in {bad.size} intervals (first t={bad[0]})")
    measured = float(np.nanmax(q)) if np.isfinite(q).any() else math.nan
    worst_t = rr.index[int(np.nanargmax(q))] if np.isfinite(q).any() else None
    above = np.isfinite(q) & (q >= 1.0)
    if above.any():
        ts = rr.index[above]
        problems.append(
            f"residuals do not contract in {ts.size} of {len(rr)} intervals: q̂={measured:.4g} "
            f"at t={worst_t} ({int(rr.loc[worst_t, 'n_rows'])} iterations)"
        )
    if "q_hat" in iv.columns:
        stored = iv["q_hat"].reindex(rr.index).to_numpy(dtype=float, na_value=np.nan)
        fin = np.isfinite(q)
        diff = np.where(
            fin & np.isfinite(stored),
            np.abs(stored - q) / np.maximum(1.0, np.abs(q)),
            np.where(fin, np.inf, 0.0),
        )
        bad = diff > consistency_tol
        if bad.any():
            k = int(np.argmax(diff))
            problems.append(
                f"stored q_hat disagrees with the stored residuals in {int(bad.sum())} "
                f"intervals; worst t={rr.index[k]}: stored {stored[k]:.6g}, residuals give "
                f"{q[k]:.6g}"
            )
    passed = not problems
    if passed:
        where = f" at t={worst_t}" if worst_t is not None else ""
        detail = (
            f"{len(rr)} intervals with >= {MIN_ITERATIONS} iterations; max q̂={measured:.4g}"
            f"{where}; floor {run.context.residual_floor:g} x total demand"
        )
    else:
        detail = "; ".join(problems)
    return CheckResult(name, STATEMENT_FIXED_POINT, measured, 1.0, passed, True, detail)


def check_fixed_point_bound(run: RunData | str | Path, tol: float = 1e-9) -> CheckResult:
    """T2-bound: ``q̂_t <= q_bound_t + tol`` where ``intervals.q_bound_applies`` is true.

    Without a ``q_bound_applies`` column the bound is taken to apply wherever ``q_bound`` is
    finite. ``q̂_t`` is recomputed from the residuals.

    Returns
    -------
    CheckResult
        ``measured`` is ``q̂_t`` and ``bound`` is ``q_bound_t`` at the interval where
        ``q̂_t - q_bound_t`` is largest.
    """
    run = as_run(run)
    name = CheckName.T2_BOUND
    got = _checked(run)
    if got is None:
        return not_applicable(
            name, STATEMENT_BOUND, f"no interval needed {MIN_ITERATIONS} or more iterations"
        )
    rr, iv = got
    if "q_bound" not in iv.columns:
        return not_applicable(name, STATEMENT_BOUND, "the run recorded no q_bound")
    qb = iv["q_bound"].reindex(rr.index).to_numpy(dtype=float, na_value=np.nan)
    applies = np.isfinite(qb)
    if "q_bound_applies" in iv.columns:
        applies &= bool_array(iv["q_bound_applies"].reindex(rr.index))
    q = rr["q_hat"].to_numpy(dtype=float)
    applies &= np.isfinite(q)
    if not applies.any():
        return not_applicable(name, STATEMENT_BOUND, "the bound applies in no checked interval")
    gap = np.where(applies, q - qb, -np.inf)
    k = int(np.argmax(gap))
    n_bad = int((gap > tol).sum())
    passed = n_bad == 0
    if passed:
        detail = (
            f"{int(applies.sum())} intervals where the bound applies; tightest at t="
            f"{rr.index[k]}: q̂={q[k]:.4g} <= q_bound={qb[k]:.4g}"
        )
    else:
        detail = (
            f"q̂ exceeds q_bound in {n_bad} of {int(applies.sum())} intervals; worst t="
            f"{rr.index[k]}: q̂={q[k]:.4g} > q_bound={qb[k]:.4g}"
        )
    return CheckResult(name, STATEMENT_BOUND, float(q[k]), float(qb[k]), passed, True, detail)
