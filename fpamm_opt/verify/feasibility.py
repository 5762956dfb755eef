"""T3: DC feasibility of every stored interval, and cold re-solves of a sample of intervals.

Both checks are independent of Pyomo and of the run's (warm-started) solver: the network is
rebuilt from the manifest with :func:`fpamm_opt.network.load_network`, flows are recomputed in
NumPy, and the cold re-solves are fresh ``scipy.optimize.linprog`` (HiGHS) problems in PTDF
form built from :class:`~fpamm_opt.network.NetworkData` arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from fpamm_opt.errors import VerificationError
from fpamm_opt.network import NetworkData
from fpamm_opt.verify.context import CostModel, RunData, as_run
from fpamm_opt.verify.panel import bool_array, pivot, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

STATEMENT_FEASIBILITY = (
    "every stored interval lies in the DC-OPF set X(t), re-checked in NumPy: island balance, "
    "min(pmin,0) <= p <= available <= pmax, 0 <= served <= demand, |DC flow| <= rating, "
    "stored flows and ratings equal the recomputed ones"
)
STATEMENT_COLD = (
    "cold re-solves (scipy HiGHS, PTDF form) of sampled executed intervals reproduce the "
    "stored solution: least-cost dispatch cost in non-scarce intervals; lexicographic tier "
    "optimum (each tier's maximum with earlier tiers fixed, later tiers at 0) in scarce ones"
)

_FEAS_COMPONENTS: dict[str, str] = {
    "balance": "island power balance (generation - load) is off",
    "gen_below_lower": "generator output below its lower bound min(pmin, 0)",
    "gen_above_available": "generator output above its available capacity",
    "available_above_pmax": "available capacity above pmax",
    "served_below_zero": "served load below 0",
    "served_above_demand": "served load above demand",
    "flow_above_rating": "recomputed flow outside the branch limits (rating, angle limits)",
    "flow_mismatch": "stored flow_mw differs from the DC flow recomputed from the injections",
    "rate_mismatch": "stored rate_mw differs from the network's rating",
    "non_finite": "non-finite value stored",
}


def _aligned(keys: np.ndarray, n: int, what: str) -> None:
    if keys.size != n or not np.array_equal(keys, np.arange(n)):
        raise VerificationError(
            f"the {what} of the stored tables ({keys.size}) do not match the network rebuilt "
            f"from the manifest ({n} {what}, ids 0..{n - 1})"
        )


@dataclass(frozen=True, eq=False)
class IntervalArrays:
    """Dense per-interval arrays of a run, aligned with the network's indices."""

    t: np.ndarray  #: (T,)
    demand_mw: np.ndarray  #: (T, n_node)
    served_mw: np.ndarray  #: (T, n_node)
    tier: np.ndarray  #: (n_node,)
    p_mw: np.ndarray  #: (T, n_gen)
    available_mw: np.ndarray  #: (T, n_gen)
    flow_mw: np.ndarray | None  #: (T, n_branch), None when not loaded
    rate_mw: np.ndarray | None  #: (T, n_branch)

    def row(self, t: int) -> int:
        """Position of interval ``t``."""
        k = int(np.searchsorted(self.t, t))
        if k >= self.t.size or self.t[k] != t:
            raise VerificationError(f"interval t={t} is missing from the node/generator tables")
        return k


def interval_arrays(run: RunData, net: NetworkData, branches: bool = True) -> IntervalArrays:
    """Pivot the ``nodes``, ``generators`` (and ``branches``) tables onto the network."""
    nodes = run.table("nodes")
    t, node, na = pivot(nodes, "node", ["demand_mw", "served_mw"], table="nodes")
    _aligned(node, net.n_node, "nodes")
    if "bus" in nodes.columns:
        first = nodes.drop_duplicates("node").set_index("node")["bus"].reindex(node)
        if not np.array_equal(first.to_numpy(dtype=float), net.node_ids.astype(float)):
            raise VerificationError(
                "the buses of the stored nodes do not match the load buses of the network "
                "rebuilt from the manifest"
            )
    require_columns(nodes, "nodes", ["tier"])
    tier = nodes.drop_duplicates("node").set_index("node")["tier"].reindex(node).to_numpy(int)
    tg, gen, ga = pivot(
        run.table("generators"), "gen", ["p_mw", "available_mw"], table="generators"
    )
    _aligned(gen, net.n_gen, "generators")
    if not np.array_equal(tg, t):
        raise VerificationError("the generators and nodes tables cover different intervals")
    flow = rate = None
    if branches:
        tb, br, ba = pivot(
            run.table("branches"), "branch", ["flow_mw", "rate_mw"], table="branches"
        )
        _aligned(br, net.n_branch, "branches")
        if not np.array_equal(tb, t):
            raise VerificationError("the branches and nodes tables cover different intervals")
        flow, rate = ba["flow_mw"], ba["rate_mw"]
    return IntervalArrays(
        t=t,
        demand_mw=na["demand_mw"],
        served_mw=na["served_mw"],
        tier=tier,
        p_mw=ga["p_mw"],
        available_mw=ga["available_mw"],
        flow_mw=flow,
        rate_mw=rate,
    )


def flow_limits(net: NetworkData) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper flow bounds (MW): ``±rate`` and, when the network has them, the
    angle-difference limits (:meth:`NetworkData.flow_limits_mw`)."""
    if hasattr(net, "flow_limits_mw"):
        lo, hi = net.flow_limits_mw()
        return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    return -net.branch_rate_mw, net.branch_rate_mw.copy()


def gen_lower_mw(net: NetworkData) -> np.ndarray:
    """Generator lower bounds of ``X(t)``: ``min(pmin, 0)`` (positive minimums relaxed to 0)."""
    return np.minimum(net.gen_pmin_mw, 0.0)


#: Largest ``n_branch · n_bus`` for which flows are computed with the dense PTDF.
DENSE_PTDF_MAX = 20_000_000


def dc_flows_mw(net: NetworkData, injection_mw: np.ndarray, chunk: int = 500) -> np.ndarray:
    """DC branch flows (MW) for ``(T, n_bus)`` net injections.

    ``PTDF · (inj + shift_inj) - shift_flow`` with the network's dense PTDF when it is small
    enough (:data:`DENSE_PTDF_MAX`), otherwise :meth:`NetworkData.flows_from_injections`
    (sparse B-θ solves) in chunks of ``chunk`` intervals. Both are the same DC flows.
    """
    inj = np.atleast_2d(injection_mw)
    if net.n_branch * net.n_bus <= DENSE_PTDF_MAX:
        return (inj + net.shift_injection_mw) @ net.ptdf.T - net.shift_flow_mw
    out = np.empty((inj.shape[0], net.n_branch))
    for s in range(0, inj.shape[0], chunk):
        out[s : s + chunk] = net.flows_from_injections(inj[s : s + chunk])
    return out


def _nonneg(v: np.ndarray) -> np.ndarray:
    """Positive part, NaN as +inf (a missing value is a violation)."""
    return np.where(np.isnan(v), np.inf, np.maximum(v, 0.0))


def check_dc_feasibility(
    run: RunData | str | Path,
    rel_tol: float = 1e-6,
    abs_tol_mw: float = 1e-6,
    chunk: int = 500,
) -> CheckResult:
    """T3: re-check every interval against ``X(t)`` in NumPy.

    Tolerance of interval ``t``: ``rel_tol · Σ_i d_i(t) + abs_tol_mw`` (MW). Flows are
    recomputed from ``net.bus_injection_mw(p, x)`` by :func:`dc_flows_mw` (dense PTDF, or
    sparse solves in chunks of ``chunk`` intervals on large networks).

    Returns
    -------
    CheckResult
        ``measured`` is the violation (MW) and ``bound`` the tolerance (MW) at the interval
        where violation / tolerance is largest.
    """
    run = as_run(run)
    name = CheckName.T3_FEASIBILITY
    net = run.network
    a = interval_arrays(run, net)
    assert a.flow_mw is not None and a.rate_mw is not None
    n_t = a.t.size
    tol = rel_tol * np.nansum(a.demand_mw, axis=1) + abs_tol_mw

    inj = net.bus_injection_mw(a.p_mw, a.served_mw)
    islands = np.unique(net.bus_island)
    onehot = (net.bus_island[:, None] == islands[None, :]).astype(float)
    flows = dc_flows_mw(net, np.nan_to_num(inj), chunk)
    rate_net = net.branch_rate_mw[None, :]
    f_lo, f_hi = flow_limits(net)
    rate_stored = np.where(np.isnan(a.rate_mw), np.inf, a.rate_mw)
    with np.errstate(invalid="ignore"):
        rate_diff = np.where(
            np.isinf(rate_stored) & np.isinf(rate_net), 0.0, np.abs(rate_stored - rate_net)
        )
    nonfinite = np.concatenate(
        [
            ~np.isfinite(a.p_mw),
            ~np.isfinite(a.available_mw),
            ~np.isfinite(a.served_mw),
            ~np.isfinite(a.demand_mw),
            ~np.isfinite(a.flow_mw),
        ],
        axis=1,
    )
    comps: dict[str, tuple[np.ndarray, str, np.ndarray]] = {
        "balance": (_nonneg(np.abs(inj @ onehot)), "island", islands),
        "gen_below_lower": (
            _nonneg(gen_lower_mw(net)[None, :] - a.p_mw),
            "gen",
            np.arange(net.n_gen),
        ),
        "gen_above_available": (_nonneg(a.p_mw - a.available_mw), "gen", np.arange(net.n_gen)),
        "available_above_pmax": (
            _nonneg(a.available_mw - net.gen_pmax_mw[None, :]),
            "gen",
            np.arange(net.n_gen),
        ),
        "served_below_zero": (_nonneg(-a.served_mw), "node", np.arange(net.n_node)),
        "served_above_demand": (_nonneg(a.served_mw - a.demand_mw), "node", np.arange(net.n_node)),
        "flow_above_rating": (
            _nonneg(np.maximum(flows - f_hi[None, :], f_lo[None, :] - flows)),
            "branch",
            np.arange(net.n_branch),
        ),
        "flow_mismatch": (_nonneg(np.abs(flows - a.flow_mw)), "branch", np.arange(net.n_branch)),
        "rate_mismatch": (_nonneg(rate_diff), "branch", np.arange(net.n_branch)),
        "non_finite": (np.where(nonfinite, np.inf, 0.0), "column", np.arange(nonfinite.shape[1])),
    }
    worst_ratio, measured, bound = -1.0, 0.0, float(tol[0]) if n_t else abs_tol_mw
    worst_desc = ""
    problems: list[str] = []
    for key, (viol, label, ids) in comps.items():
        per_t = viol.max(axis=1) if viol.shape[1] else np.zeros(n_t)
        ratio = per_t / tol
        k = int(np.argmax(ratio)) if n_t else 0
        if n_t == 0:
            continue
        j = int(np.argmax(viol[k])) if viol.shape[1] else 0
        where = f"t={a.t[k]}, {label} {ids[j] if viol.shape[1] else '-'}"
        if ratio[k] > worst_ratio:
            worst_ratio, measured, bound = float(ratio[k]), float(per_t[k]), float(tol[k])
            worst_desc = f"{key} {per_t[k]:.3g} MW at {where}"
        n_bad = int((ratio > 1.0).sum())
        if n_bad:
            problems.append(
                f"{_FEAS_COMPONENTS[key]} in {n_bad} intervals; worst {per_t[k]:.6g} MW at "
                f"{where} (tolerance {tol[k]:.3g} MW)"
            )
    rate_bad = comps["rate_mismatch"][0].max(axis=1) > tol if n_t else np.zeros(0, bool)
    if n_t and rate_bad.all():
        versions = run.manifest.get("versions", {})
        made = versions.get("fpamm_opt") if isinstance(versions, dict) else None
        problems.insert(
            0,
            "the network rebuilt from the manifest does not have the run's branch ratings "
            f"({net.ratings.describe()}); was the run made with another version of fpamm-opt"
            f"{f' (it records {made})' if made else ''}? Flow checks below use the rebuilt "
            "ratings",
        )
    passed = not problems
    detail = (
        f"{n_t} intervals feasible on {net.name} ({net.ratings.describe()}); worst: {worst_desc}"
        if passed
        else "; ".join(problems)
    )
    return CheckResult(name, STATEMENT_FEASIBILITY, measured, bound, passed, True, detail)


# ------------------------------------------------------------------ cold re-solves
def linear_price(net: NetworkData, cost_model: CostModel = CostModel.LINEAR) -> np.ndarray:
    """Per-MW generator price ($/MWh) of the linear cost model: ``c1 + c2 · pmax``."""
    if cost_model is not CostModel.LINEAR:
        raise VerificationError(f"no linear price under cost model {cost_model!s}")
    return np.asarray(net.gen_cost_c1 + net.gen_cost_c2 * net.gen_pmax_mw, dtype=float)


@dataclass(frozen=True)
class LPSolution:
    """Outcome of one cold linear program."""

    ok: bool
    objective: float
    p_mw: np.ndarray
    served_mw: np.ndarray
    message: str = ""


class ColdDCOPF:
    """The DC-OPF set ``X`` in PTDF form, as ``linprog`` matrices built once per network.

    Variables ``v = (p, x)``: generator outputs (MW) and served loads (MW). Constraints:
    per island ``Σ p - Σ x = Σ fixed withdrawal``; for every limited branch
    ``lo <= PTDF · (inj + shift_inj) - shift_flow <= hi`` with ``inj = A_g p - A_n x - fixed``
    and ``(lo, hi)`` from :func:`flow_limits` (``±rate``). Generator outputs lie in
    ``[min(pmin, 0), available]``.
    """

    def __init__(self, net: NetworkData) -> None:
        self.net = net
        ng, nn = net.n_gen, net.n_node
        h = net.ptdf
        hv = np.hstack([h[:, net.gen_bus], -h[:, net.node_bus]])
        const = h @ (net.shift_injection_mw - net.bus_fixed_withdrawal_mw) - net.shift_flow_mw
        f_lo, f_hi = flow_limits(net)
        up, dn = np.isfinite(f_hi), np.isfinite(f_lo)
        self.a_ub = sp.csr_matrix(np.vstack([hv[up], -hv[dn]]))
        self.b_ub = np.r_[f_hi[up] - const[up], const[dn] - f_lo[dn]]
        self.p_lower = gen_lower_mw(net)
        rows, rhs = [], []
        for isl in np.unique(net.bus_island):
            g = (net.bus_island[net.gen_bus] == isl).astype(float)
            n = (net.bus_island[net.node_bus] == isl).astype(float)
            if not (g.any() or n.any()):
                continue
            rows.append(np.r_[g, -n])
            rhs.append(float(net.bus_fixed_withdrawal_mw[net.bus_island == isl].sum()))
        self.a_eq = sp.csr_matrix(np.array(rows).reshape(-1, ng + nn))
        self.b_eq = np.array(rhs)

    def solve(self, cost: np.ndarray, p_bounds: np.ndarray, x_bounds: np.ndarray) -> LPSolution:
        """``min cost · (p, x)`` over ``X`` with the given ``(n, 2)`` variable bounds."""
        ng = self.net.n_gen
        res = linprog(
            cost,
            A_ub=self.a_ub if self.a_ub.shape[0] else None,
            b_ub=self.b_ub if self.a_ub.shape[0] else None,
            A_eq=self.a_eq if self.a_eq.shape[0] else None,
            b_eq=self.b_eq if self.a_eq.shape[0] else None,
            bounds=np.vstack([p_bounds, x_bounds]),
            method="highs",
        )
        if res.status != 0 or res.x is None:
            return LPSolution(
                False,
                math.nan,
                np.full(ng, np.nan),
                np.full(self.net.n_node, np.nan),
                str(res.message),
            )
        return LPSolution(True, float(res.fun), res.x[:ng], res.x[ng:])

    def least_cost(
        self,
        price: np.ndarray,
        available_mw: np.ndarray,
        demand_mw: np.ndarray,
        voll: float | None = None,
    ) -> LPSolution:
        """Least-cost dispatch serving all demand, or with shedding at ``voll`` $/MWh.

        With ``voll`` the objective is ``price · p + voll · Σ (d - x)`` (the constant
        ``voll · Σ d`` is added back to the reported objective).
        """
        pb = np.column_stack([self.p_lower, available_mw])
        if voll is None:
            xb = np.column_stack([demand_mw, demand_mw])
            return self.solve(np.r_[price, np.zeros_like(demand_mw)], pb, xb)
        xb = np.column_stack([np.zeros_like(demand_mw), demand_mw])
        sol = self.solve(np.r_[price, -voll * np.ones_like(demand_mw)], pb, xb)
        if sol.ok:
            sol = LPSolution(
                True, sol.objective + voll * float(demand_mw.sum()), sol.p_mw, sol.served_mw
            )
        return sol

    def tier_maximum(
        self,
        available_mw: np.ndarray,
        demand_mw: np.ndarray,
        x_lower: np.ndarray,
        x_upper: np.ndarray,
        members: np.ndarray,
    ) -> LPSolution:
        """``max Σ_{i in members} x_i`` with served loads in ``[x_lower, x_upper]``."""
        pb = np.column_stack([self.p_lower, available_mw])
        xb = np.column_stack([x_lower, x_upper])
        cost = np.r_[np.zeros_like(available_mw), -members.astype(float)]
        sol = self.solve(cost, pb, xb)
        if sol.ok:
            sol = LPSolution(True, -sol.objective, sol.p_mw, sol.served_mw)
        return sol


def parse_tier_order(value: object) -> list[int] | None:
    """``"0>1"`` -> ``[0, 1]``; ``None`` for a missing order."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    if not text or text.lower() in ("none", "nan"):
        return None
    return [int(s) for s in text.split(">")]


def _sample(ts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    if k >= ts.size:
        return ts
    return np.sort(rng.choice(ts, size=k, replace=False))


def _candidates(intervals: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    require_columns(intervals, "intervals", ["t", "scarce"])
    ok = np.ones(len(intervals), dtype=bool)
    if "executed" in intervals.columns:
        ok &= bool_array(intervals["executed"])
    if "status" in intervals.columns:
        ok &= intervals["status"].astype(str).str.startswith("optimal").to_numpy()
    scarce = bool_array(intervals["scarce"])
    t = intervals["t"].to_numpy()
    return np.sort(t[ok & scarce]), np.sort(t[ok & ~scarce])


def check_cold_resolve(
    run: RunData | str | Path,
    sample: int = 20,
    seed: int = 0,
    rel_tol: float = 1e-6,
    tier_rel_tol: float = 2e-6,
    tier_abs_tol_mw: float = 2e-5,
) -> CheckResult:
    """T3 cold re-solve of up to ``sample`` executed, optimally solved intervals.

    About half the sample is scarce intervals (seeded choice).

    - Non-scarce interval (or any interval of an ``lmp`` run): the least-cost LP (linear
      prices, see :func:`linear_price`; with ``voll`` shedding for ``lmp`` runs) must have the
      stored dispatch's cost within ``rel_tol`` relative; served must equal demand within
      ``rel_tol + scarcity_tol`` of total demand (the screen calls an interval scarce only
      above ``scarcity_tol``).
    - Scarce interval: for each tier ``k`` in the stored ``tier_order``,
      ``max Σ_{i in k} x_i`` with earlier tiers fixed at their stored values and later tiers
      at 0 must equal the stored tier total within ``max(tier_rel_tol · Σ d,
      tier_abs_tol_mw)``: twice the allocator's own slack on a tier's energy
      (``max(1e-6 Σ d, 1e-5 MW)``), which the stored total may legitimately use up.

    Returns
    -------
    CheckResult
        ``measured`` is the relative gap (cost gap / cost, or MW gap / total demand) and
        ``bound`` its tolerance, at the re-solve where gap / tolerance is largest.
    """
    run = as_run(run)
    name = CheckName.T3_COLD_RESOLVE
    ctx = run.context
    intervals = run.table("intervals")
    scarce_ts, normal_ts = _candidates(intervals)
    lmp = ctx.policy == "lmp"
    if ctx.cost_model is not CostModel.LINEAR:
        if lmp:
            return not_applicable(name, STATEMENT_COLD, f"cost model {ctx.cost_model!s} is not LP")
        normal_ts = normal_ts[:0]
    if lmp:
        normal_ts, scarce_ts = np.sort(np.r_[normal_ts, scarce_ts]), scarce_ts[:0]
    if scarce_ts.size + normal_ts.size == 0:
        return not_applicable(name, STATEMENT_COLD, "no executed, optimally solved interval")
    rng = np.random.default_rng(seed)
    n_s = min(scarce_ts.size, math.ceil(sample / 2))
    n_n = min(normal_ts.size, sample - n_s)
    n_s = min(scarce_ts.size, sample - n_n)
    picked_s = _sample(scarce_ts, n_s, rng)
    picked_n = _sample(normal_ts, n_n, rng)

    net = run.network
    a = interval_arrays(run, net, branches=False)
    lp = ColdDCOPF(net)
    orders = intervals.set_index("t")["tier_order"] if "tier_order" in intervals.columns else None
    problems: list[str] = []
    w_ratio, w_gap, w_tol, w_desc = -1.0, 0.0, rel_tol, ""

    def note(gap: float, tol: float, desc: str) -> None:
        nonlocal w_ratio, w_gap, w_tol, w_desc
        ratio = gap / tol if tol > 0 else math.inf
        if ratio > w_ratio:
            w_ratio, w_gap, w_tol, w_desc = ratio, gap, tol, desc
        if gap > tol:
            problems.append(desc)

    if picked_n.size:
        price = linear_price(net, ctx.cost_model)
    for t in picked_n:
        k = a.row(t)
        d, avail, p, x = a.demand_mw[k], a.available_mw[k], a.p_mw[k], a.served_mw[k]
        total = float(d.sum())
        stored = float(price @ p) + (ctx.voll * float((d - x).sum()) if lmp else 0.0)
        sol = lp.least_cost(price, avail, d, voll=ctx.voll if lmp else None)
        if not sol.ok:
            note(
                math.inf,
                rel_tol,
                f"t={t}: marked non-scarce but its demand cannot be served in X(t) ({sol.message})",
            )
            continue
        gap = abs(sol.objective - stored) / max(1.0, abs(stored))
        note(
            gap,
            rel_tol,
            f"t={t}: least-cost {sol.objective:.8g} $/h vs stored dispatch "
            f"{stored:.8g} $/h (relative gap {gap:.3g})",
        )
        if not lmp:
            short = float(np.abs(d - x).sum()) / max(total, 1e-12)
            note(
                short,
                rel_tol + ctx.scarcity_tol,
                f"t={t}: non-scarce interval does not serve all demand "
                f"({float((d - x).sum()):.6g} MW short)",
            )
    for t in picked_s:
        k = a.row(t)
        d, avail, x = a.demand_mw[k], a.available_mw[k], a.served_mw[k]
        total = max(float(d.sum()), 1e-12)
        tol = max(tier_rel_tol, tier_abs_tol_mw / total)
        order = parse_tier_order(orders.get(t) if orders is not None else None)
        if order is None:
            note(math.inf, tol, f"t={t}: scarce interval without a tier_order")
            continue
        fixed = np.zeros(net.n_node, dtype=bool)
        for tier in order:
            members = a.tier == tier
            lower = np.where(fixed, x, 0.0)
            upper = np.where(fixed, x, np.where(members, d, 0.0))
            sol = lp.tier_maximum(avail, d, lower, upper, members)
            if not sol.ok:  # stored earlier tiers may sit a solver tolerance outside X(t)
                slack = tol * total
                sol = lp.tier_maximum(
                    avail, d, np.where(fixed, np.maximum(x - slack, 0.0), 0.0), upper, members
                )
            stored = float(x[members].sum())
            if not sol.ok:
                note(
                    math.inf,
                    tol,
                    f"t={t}: tier {tier} re-solve infeasible with earlier tiers at "
                    f"their stored values ({sol.message})",
                )
                break
            gap = abs(sol.objective - stored) / total
            how = (
                f"but {sol.objective:.8g} MW was deliverable"
                if sol.objective > stored
                else f"more than the lexicographic maximum {sol.objective:.8g} MW"
            )
            note(
                gap,
                tol,
                f"t={t}: tier {tier} got {stored:.8g} MW {how} (order "
                f"{'>'.join(map(str, order))}; gap {gap:.3g} of demand)",
            )
            fixed |= members
    passed = not problems
    kinds = f"{picked_n.size} {'lmp' if lmp else 'non-scarce'} and {picked_s.size} scarce intervals"
    if passed:
        detail = f"{kinds} re-solved cold; worst: {w_desc}" if w_desc else kinds
    else:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        detail = f"{kinds} re-solved cold; " + "; ".join(problems[:5]) + more
    return CheckResult(name, STATEMENT_COLD, w_gap, w_tol, passed, True, detail)
