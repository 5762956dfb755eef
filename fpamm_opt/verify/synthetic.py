"""A small, hand-built, internally consistent run (for tests of the checks and of ``verify``).

:func:`synthetic_run` simulates, in NumPy only and without the mechanism, a run on a case with
derived ratings that satisfies every theorem check by construction:

- two tiers (every third node in tier 0); every ``normal_every``-th interval is normal
  (available capacity covers demand), the others are scarce with available capacity equal to
  tier 0's demand plus what tier 1 is meant to receive, so the lexicographic order ``0>1`` is
  optimal (tier 0 fully served, tier 1 gets the rest);
- normal intervals are dispatched at least cost by an LP written in **B-θ** form (the checks
  re-solve in PTDF form, so the two formulations cross-check each other); scarce intervals
  scale a reference least-cost dispatch to the served load (an LP when that overloads a
  branch) and set the available capacity to it; flows come from B-θ angles
  (:meth:`~fpamm_opt.network.NetworkData.flows_from_injections`);
- tier-1 delivery ratios follow ``F_i(t) = F* + c_i / √t`` (or stall at ``F* + c_i`` until
  ``0.6 T`` with ``stall=True``), memory follows the exact saturated-integrator update,
  fixed-point residuals shrink geometrically with factor ``q ≤ 0.5 < q_bound = 0.6``.

The construction is checked on ``case14`` (the tests' case); on other cases the lexicographic
tier optimum is not guaranteed (serving tier 0 alone may congest the network).

Tables are pandas DataFrames that a test may tamper with before :meth:`SyntheticRun.write`
writes them through :class:`~fpamm_opt.io.writer.RunWriter`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from fpamm_opt.errors import VerificationError
from fpamm_opt.io.writer import RunWriter
from fpamm_opt.network import NetworkData, load_network
from fpamm_opt.verify.context import RunData

#: Residual contraction factors cycled over scarce intervals, and the recorded bound.
_Q_CYCLE = (0.3, 0.4, 0.5)
_Q_BOUND = 0.6


@dataclass(frozen=True, eq=False)
class SyntheticRun:
    """A manifest and the five tables of a synthetic run."""

    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame]

    def copy(self) -> SyntheticRun:
        """A deep copy (tamper with it freely)."""
        return SyntheticRun(
            copy.deepcopy(self.manifest), {k: v.copy(deep=True) for k, v in self.tables.items()}
        )

    def data(self) -> RunData:
        """In-memory :class:`~fpamm_opt.verify.context.RunData` (no files)."""
        return RunData(manifest=self.manifest, tables=dict(self.tables))

    def write(self, path: str | Path) -> Path:
        """Write a run directory at ``path`` (must not exist) through ``RunWriter``."""
        w = RunWriter(Path(path), "synthetic", self.manifest, flush_every=1)
        try:
            for name, df in self.tables.items():
                w.add(name, {c: _column(df[c]) for c in df.columns})
            w.end_interval()
            return Path(w.close())
        except BaseException:
            if not w.closed:
                w.abort()
            raise


def _column(s: pd.Series) -> np.ndarray:
    if s.dtype == object or isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
        arr = s.astype(object).to_numpy()
        if all(isinstance(v, str) for v in arr):
            return arr.astype(str)
        return np.array([None if pd.isna(v) else v for v in arr], dtype=object)
    return s.to_numpy()


def _long(t: np.ndarray, key: str, m: int, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table (one row per ``(t, key)``) from ``(T, m)`` arrays."""
    out: dict[str, np.ndarray] = {
        "t": np.repeat(t, m),
        key: np.tile(np.arange(m, dtype=np.int32), t.size),
    }
    out.update({c: np.ascontiguousarray(v).reshape(-1) for c, v in cols.items()})
    return pd.DataFrame(out)


def _flows(net: NetworkData, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    # B-θ angles (sparse solve): the checks recompute flows with the PTDF.
    return np.asarray(net.flows_from_injections(net.bus_injection_mw(p, x)))


def least_cost_btheta(
    net: NetworkData, price: np.ndarray, available_mw: np.ndarray, demand_mw: np.ndarray
) -> np.ndarray:
    """Least-cost dispatch serving ``demand_mw`` in B-θ form; generator outputs (MW)."""
    ng, nb = net.n_gen, net.n_bus
    ag = sp.csr_matrix((np.ones(ng), (net.gen_bus, np.arange(ng))), shape=(nb, ng))
    load = np.zeros(nb)
    np.add.at(load, net.node_bus, demand_mw)
    a_eq = sp.hstack([-ag, net.bbus_mw]).tocsr()
    b_eq = -load - net.bus_fixed_withdrawal_mw + net.shift_injection_mw
    lim = np.isfinite(net.branch_rate_mw)
    bf = net.flow_sensitivity_mw[lim]
    a_ub = sp.vstack(
        [
            sp.hstack([sp.csr_matrix((bf.shape[0], ng)), bf]),
            sp.hstack([sp.csr_matrix((bf.shape[0], ng)), -bf]),
        ]
    ).tocsr()
    rate, shift = net.branch_rate_mw[lim], net.shift_flow_mw[lim]
    b_ub = np.r_[rate + shift, rate - shift]
    va_b = [(0.0, 0.0) if r else (None, None) for r in net.bus_ref]
    bounds = [(0.0, float(a)) for a in available_mw] + va_b
    res = linprog(
        np.r_[price, np.zeros(nb)],
        A_ub=a_ub,
        b_ub=b_ub,
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        raise VerificationError(f"synthetic run: least-cost LP failed ({res.message})")
    return np.asarray(res.x[:ng])


def synthetic_run(
    n_intervals: int = 240,
    *,
    case: str = "case14",
    rating_alpha: float = 4.0,
    beta: float = 0.05,
    target: float = 0.7,
    amplitude: float = 0.2,
    normal_every: int = 4,
    theta: float = 0.0,
    stall: bool = False,
    tier_targets: list[float | None] | None = None,
    seed: int = 0,
) -> SyntheticRun:
    """Build a consistent synthetic run (see the module docstring).

    Parameters
    ----------
    n_intervals : int
        Number of intervals ``T``.
    case, rating_alpha : str, float
        Network (MATPOWER convention, derived ratings ``max(α |f_base|, 5 MW)``).
    beta : float
        Memory gain recorded in the manifest and used for the memory rows.
    target, amplitude : float
        Tier-1 limit ``F*`` and the spread of the ``c_i`` in ``F* + c_i/√t``.
    normal_every : int
        Every ``normal_every``-th interval (``t % normal_every == 0``) is normal.
    theta : float
        Trigger threshold written to the manifest; with ``theta > 0`` every third scarce
        interval is marked held (``executed`` false, status ``held``), tracking errors nan.
    stall : bool
        Tier-1 delivery ratios stall at ``F* + c_i`` until ``0.6 T`` (T5 must fail).
    tier_targets : list, optional
        Written to ``spec.scenario.tier_targets``.
    seed : int
        Demand and availability noise.
    """
    rng = np.random.default_rng(seed)
    net = load_network(case, "matpower", "derived", rating_alpha, 5.0)
    n, T = net.n_node, int(n_intervals)
    tier = np.where(np.arange(n) % 3 == 0, 0, 1)
    t1 = np.flatnonzero(tier == 1)
    c = np.zeros(n)
    c[t1] = amplitude * np.linspace(-1.0, 1.0, t1.size)
    price = net.gen_cost_c1 + net.gen_cost_c2 * net.gen_pmax_mw
    p_ref = least_cost_btheta(net, price, net.gen_pmax_mw, 0.85 * net.node_demand_mw)

    def g_of(k: int) -> np.ndarray:
        if stall:
            return target + (c if k <= 0.6 * T else c * (T - k) / (0.4 * T))
        return target + c / math.sqrt(k)

    arr, iv_rows, iters = _intervals(net, T, rng, beta, theta, normal_every, g_of, t1, p_ref, price)
    tables = _tables(net, tier, arr, T, iv_rows, iters)
    manifest = _synthetic_manifest(case, rating_alpha, beta, theta, tier_targets, seed, T)
    return SyntheticRun(manifest, tables)


def _intervals(
    net: NetworkData,
    T: int,
    rng: np.random.Generator,
    beta: float,
    theta: float,
    normal_every: int,
    g_of: Callable[[int], np.ndarray],
    t1: np.ndarray,
    p_ref: np.ndarray,
    price: np.ndarray,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], list[pd.DataFrame]]:
    """Step the ``T`` intervals: the ``(T, m)`` arrays of the long tables, the interval rows
    and the fixed-point iterations (tier-1 delivery ratios follow ``g_of(t + 1)``)."""
    n, ng = net.n_node, net.n_gen
    cum_x, cum_d = np.zeros(n), np.zeros(n)

    s = np.zeros(n)
    widths = {"d": n, "x": n, "u": n, "s0": n, "s1": n, "F": n, "p": ng, "avail": ng}
    arr = {k: np.zeros((T, m)) for k, m in {**widths, "flow": net.n_branch}.items()}
    iv_rows: list[dict[str, Any]] = []
    iters: list[pd.DataFrame] = []
    window, in_window = -1, False
    n_scarce = 0
    for t in range(T):
        k = t + 1
        d = net.node_demand_mw * (0.85 + 0.1 * math.sin(2 * math.pi * t / 48))
        d = d * (1.0 + 0.02 * rng.standard_normal(n))
        cum_d += d
        scarce = t % normal_every != 0
        x, p, avail = _serve(net, d, scarce, g_of(k), t1, cum_d, cum_x, p_ref, price, rng)
        cum_x += x
        flow = _flows(net, p, x)
        if np.any(np.abs(flow) > net.branch_rate_mw + 1e-6):
            raise VerificationError(f"synthetic run: interval {t} overloads a branch")
        u = np.clip(1.0 - x / d, 0.0, 1.0)
        s_after = np.clip((1.0 - beta) * s + beta * u, 0.0, 1.0)
        row = {"d": d, "x": x, "u": u, "s0": s, "s1": s_after, "F": cum_x / cum_d}
        for key, v in {**row, "p": p, "avail": avail, "flow": flow}.items():
            arr[key][t] = v
        if scarce and not in_window:
            window += 1
        in_window = scarce
        executed = not (theta > 0 and scarce and n_scarce % 3 == 2)
        q, n_iter = (
            (_Q_CYCLE[n_scarce % len(_Q_CYCLE)], 4 + n_scarce % 3)
            if scarce and executed
            else (math.nan, 0)
        )
        if n_iter:
            r = 0.01 * float(d.sum()) * q ** np.arange(n_iter)
            iters.append(
                pd.DataFrame({"t": t, "m": np.arange(n_iter, dtype=np.int32), "residual": r})
            )
        n_scarce += bool(scarce)
        iv_rows.append(_interval_row(net, t, scarce, window, d, x, p, avail, executed, n_iter, q))
        s = s_after
    return arr, iv_rows, iters


def _serve(
    net: NetworkData,
    d: np.ndarray,
    scarce: bool,
    g: np.ndarray,
    t1: np.ndarray,
    cum_d: np.ndarray,
    cum_x: np.ndarray,
    p_ref: np.ndarray,
    price: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Served loads, dispatch and available capacity of one interval: scarce intervals serve
    tier 1 along the target path ``g`` (cumulative ratios), normal ones serve everything."""
    fixed_total = float(net.bus_fixed_withdrawal_mw.sum())
    if scarce:
        x = d.copy()
        x[t1] = np.clip(g[t1] * cum_d[t1] - cum_x[t1], 0.0, d[t1])
        p = p_ref * (float(x.sum()) + fixed_total) / p_ref.sum()
        if np.any(np.abs(_flows(net, p, x)) > net.branch_rate_mw):
            p = least_cost_btheta(net, price, net.gen_pmax_mw, x)
        avail = p.copy()
    else:
        x = d.copy()
        avail = net.gen_pmax_mw * rng.uniform(0.85, 1.0, net.n_gen)
        p = least_cost_btheta(net, price, avail, d)
    return x, p, avail


def _interval_row(
    net: NetworkData,
    t: int,
    scarce: bool,
    window: int,
    d: np.ndarray,
    x: np.ndarray,
    p: np.ndarray,
    avail: np.ndarray,
    executed: bool,
    n_iter: int,
    q: float,
) -> dict[str, Any]:
    """The ``intervals`` row of interval ``t``."""
    return {
        "t": t,
        "scarce": bool(scarce),
        "window": window if scarce else None,
        "tier_order": "0>1" if scarce else "",
        "demand_mw": float(d.sum()),
        "served_mw": float(x.sum()),
        "available_mw": float(avail.sum()),
        "amm_price": 1000.0 * (1.0 - min(1.0, float(avail.sum()) / float(d.sum()))),
        "iterations": n_iter,
        "q_hat": q,
        "q_bound": _Q_BOUND if n_iter else math.nan,
        "executed": bool(executed),
        "status": "optimal" if executed else "held",
        "solve_s": 0.0,
        "q_bound_applies": bool(n_iter) and t % 5 != 0,
        "gamma": 0.5 if n_iter else math.nan,
        "tier_level_max": math.nan,
        "n_solves": n_iter + 1 if executed else 0,
        "tracking_error": math.nan,
        "cost": float(net.gen_cost_c2 @ p**2 + net.gen_cost_c1 @ p),
        "deliverable_mw": float(x.sum()),
    }


def _tables(
    net: NetworkData,
    tier: np.ndarray,
    arr: dict[str, np.ndarray],
    T: int,
    iv_rows: list[dict[str, Any]],
    iters: list[pd.DataFrame],
) -> dict[str, pd.DataFrame]:
    """The five tables of a synthetic run."""
    nodes, gens, branches = _long_tables(net, tier, arr, T)
    empty_it = pd.DataFrame(
        {"t": np.zeros(0, np.int64), "m": np.zeros(0, np.int32), "residual": np.zeros(0)}
    )
    intervals = pd.DataFrame(iv_rows)
    intervals["window"] = intervals["window"].astype("Int64")
    return {
        "intervals": intervals,
        "nodes": nodes,
        "branches": branches,
        "generators": gens,
        "iterations": pd.concat(iters, ignore_index=True) if iters else empty_it,
    }


def _long_tables(
    net: NetworkData, tier: np.ndarray, arr: dict[str, np.ndarray], T: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ``nodes``, ``generators`` and ``branches`` tables from the ``(T, m)`` arrays."""
    n, ng, nb = net.n_node, net.n_gen, net.n_branch
    tt = np.arange(T, dtype=np.int64)
    nodes = _long(
        tt,
        "node",
        n,
        {
            "bus": np.broadcast_to(net.node_ids.astype(np.int32), (T, n)),
            "tier": np.broadcast_to(tier.astype(np.int16), (T, n)),
            "demand_mw": arr["d"],
            "served_mw": arr["x"],
            "shortfall_ratio": arr["u"],
            "memory_before": arr["s0"],
            "memory_after": arr["s1"],
            "weight": 1.0 / (0.05 + 1.0 - arr["s0"]),
            "delivery_ratio": arr["F"],
            "lmp": np.full((T, n), np.nan),
            "served_ratio_exact": np.full((T, n), np.nan),
        },
    )
    gens = _long(
        tt,
        "gen",
        ng,
        {
            "bus": np.broadcast_to(net.bus_ids[net.gen_bus].astype(np.int32), (T, ng)),
            "p_mw": arr["p"],
            "available_mw": arr["avail"],
        },
    )
    branches = _long(
        tt,
        "branch",
        nb,
        {
            "flow_mw": arr["flow"],
            "rate_mw": np.broadcast_to(net.branch_rate_mw, (T, nb)),
        },
    )
    return nodes, gens, branches


def _synthetic_manifest(
    case: str,
    rating_alpha: float,
    beta: float,
    theta: float,
    tier_targets: list[float | None] | None,
    seed: int,
    T: int,
) -> dict[str, Any]:
    """The manifest of a synthetic run."""
    mechanism = {"beta": beta, "trigger_theta": theta, "residual_floor": 1e-6}
    scenario: dict[str, Any] = {}
    if tier_targets is not None:
        scenario["tier_targets"] = list(tier_targets)
    manifest = {
        "status": "complete",
        "policy": "fpamm",
        "seed": seed,
        "spec": {
            "network": {
                "case": case,
                "convention": "matpower",
                "ratings": "derived",
                "rating_alpha": rating_alpha,
                "rating_min_mw": 5.0,
            },
            "mechanism": mechanism,
            "scenario": scenario,
            "run": {"intervals": T, "policy": "fpamm", "seed": seed},
        },
        "cost_model": "linear",
        "synthetic": True,
    }
    return manifest
