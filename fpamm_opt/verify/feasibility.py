"""T3: DC feasibility of every stored interval, and cold re-solves of a sample of intervals.

Both checks are independent of Pyomo and of the run's (warm-started) solver: the network is
rebuilt from the manifest with :func:`fpamm_opt.network.load_network`, flows are recomputed in
NumPy, and the cold re-solves are fresh problems in PTDF form built from
:class:`~fpamm_opt.network.NetworkData` arrays: ``scipy.optimize.linprog`` (HiGHS) for the
least-cost dispatches, and for scarce intervals a replay of the lexicographic tier clearing the
manifest claims (``mechanism_resolved.rule`` / ``.tier_energy``) on a fresh ``highspy``
instance per solve (:mod:`fpamm_opt.verify.cold`).

Replay tolerances, measured on real runs (``fpamm_opt.sim.run.run``, PTDF, HiGHS fast path,
allocator band ``1e-6 d + 1e-6``; every scarce executed interval replayed; 21 runs, ~2000
scarce intervals; largest ``max_i |x_cold - x_stored|`` and its share of the bound
``1e-4 · max_i d_i + 1e-4 MW``)::

    case    rule    tier_energy  runs (T, seeds)          largest gap   share of bound
    case14  qp      free / max   400 x3, 1000 (seed 1)    1.1e-4 MW     0.01
    case14  maxmin  free / max   400 x2, 1000 (seed 1)    3.1e-3 MW     0.40
    case57  qp      free / max   300 x2, 600 (seed 1)     4.6e-4 MW     0.01
    case57  maxmin  free / max   300 x2, 600 (seeds 1,2)  1.8e-2 MW     0.42
    case118 qp      free / max   200 x2, 400 (seed 1)     3.3e-4 MW     0.01
    case118 maxmin  free / max   200 x2, 400 (seed 1)     7.5e-4 MW     0.03
                                 and one interval (seed 1, t=89): 0.85 MW, certified

(``equal`` policy runs behave like ``fpamm`` ones; the run loop's ``tier_energy = max`` runs
were made with the allocator actually set to MAX.) The QP is strongly convex and lands
within 1 % of the bound. The leximin is not: its MW gaps are the allocator's own fixing band
(a fixed bottleneck may sit ``1e-6 d + 1e-6`` below its level) amplified by the network, and
where a bottleneck's dual is tiny the amplification is huge (case118 t=89: 0.85 MW bought by
a 2e-5 change of the common weighted level). Such a tier is accepted only through a
:class:`~fpamm_opt.verify.cold.LeximinCertificate` (the stored point is in ``X(t)`` and its
sorted weighted shortfalls are lexicographically no worse than the replay's within 10x the
band), and the detail says so. The bound is the same for both rules; moving 1 MW between two
nodes of a tier is caught (tests/unit/test_verify_cold.py, tests/component/
test_verify_cold_runs.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from fpamm_opt.errors import VerificationError
from fpamm_opt.feasible import (
    dc_flows_mw,
    flow_limits,
    gen_lower_mw,
    positive_part,
    x_violations,
)
from fpamm_opt.io.manifest import Manifest
from fpamm_opt.mechanism.types import (
    FINAL_RULE_RE,
    QP_FALLBACK_RE,
    ROUNDS_CAPPED_RE,
    ClearEventKind,
    status_solve_error,
    status_verified,
)
from fpamm_opt.network import NetworkData
from fpamm_opt.tolerances import DEFAULT_COLD_SAMPLE
from fpamm_opt.verify.cold import ColdClearing, TierReplay, replay_clearing
from fpamm_opt.verify.context import CostModel, RunContext, RunData, as_run
from fpamm_opt.verify.panel import bool_array, pivot, require_columns
from fpamm_opt.verify.result import CheckName, CheckResult, not_applicable

STATEMENT_FEASIBILITY = (
    "every stored interval lies in the DC-OPF set X(t), re-checked in NumPy: island balance, "
    "min(pmin,0) <= p <= available <= pmax, 0 <= served <= demand, |DC flow| <= rating, "
    "stored flows and ratings equal the recomputed ones"
)
STATEMENT_COLD = (
    "cold re-solves (fresh HiGHS instances, PTDF form) of sampled executed intervals reproduce "
    "the stored solution: least-cost dispatch cost in non-scarce intervals (and LMP runs); in "
    "scarce ones the claimed lexicographic tier clearing (rule, tier_energy of the manifest; "
    "earlier tiers at their stored values, later tiers at 0) gives each tier's stored node "
    "allocation (a max-min tier may instead be certified leximin-optimal within the "
    "allocator's fixing band: in X(t), sorted weighted shortfalls no worse; a QP tier may be "
    "certified optimal by its KKT conditions at the stored point: multipliers on the "
    "constraints active there leave a stationarity residual of at most 1e-6 max w)"
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


def _feasibility_components(
    net: NetworkData, a: IntervalArrays, chunk: int
) -> dict[str, tuple[np.ndarray, str, np.ndarray]]:
    """Per-interval violations (MW) of every T3 component, with the label and ids of columns.

    The components of ``X(t)`` come from :func:`~fpamm_opt.feasible.x_violations`; the stored
    tables are also checked against the network (pmax, flows, ratings, finite values).
    """
    assert a.flow_mw is not None and a.rate_mw is not None
    flows = dc_flows_mw(net, np.nan_to_num(net.bus_injection_mw(a.p_mw, a.served_mw)), chunk)
    xv = x_violations(net, a.p_mw, a.served_mw, a.available_mw, a.demand_mw, flows_mw=flows)
    rate_net = net.branch_rate_mw[None, :]
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
    gens, nodes = np.arange(net.n_gen), np.arange(net.n_node)
    branches = np.arange(net.n_branch)
    return {
        "balance": (xv.balance, "island", xv.islands),
        "gen_below_lower": (xv.gen_below_lower, "gen", gens),
        "gen_above_available": (xv.gen_above_available, "gen", gens),
        "available_above_pmax": (
            positive_part(a.available_mw - net.gen_pmax_mw[None, :]),
            "gen",
            gens,
        ),
        "served_below_zero": (xv.served_below_zero, "node", nodes),
        "served_above_demand": (xv.served_above_demand, "node", nodes),
        "flow_above_rating": (xv.flow_above_rating, "branch", branches),
        "flow_mismatch": (positive_part(np.abs(flows - a.flow_mw)), "branch", branches),
        "rate_mismatch": (positive_part(rate_diff), "branch", branches),
        "non_finite": (np.where(nonfinite, np.inf, 0.0), "column", np.arange(nonfinite.shape[1])),
    }


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

    comps = _feasibility_components(net, a, chunk)
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
class ColdLPResult:
    """Outcome of one cold linear program (``scipy.optimize.linprog``) of :class:`ColdDCOPF`.

    Not an engine's :class:`fpamm_opt.engine.LPSolution`: no solver status, only whether
    the LP solved, its objective and the point ``(p, x)``.
    """

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

    def solve(self, cost: np.ndarray, p_bounds: np.ndarray, x_bounds: np.ndarray) -> ColdLPResult:
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
            return ColdLPResult(
                False,
                math.nan,
                np.full(ng, np.nan),
                np.full(self.net.n_node, np.nan),
                str(res.message),
            )
        return ColdLPResult(True, float(res.fun), res.x[:ng], res.x[ng:])

    def tier_maximum(
        self,
        available_mw: np.ndarray,
        demand_mw: np.ndarray,
        x_lower: np.ndarray,
        x_upper: np.ndarray,
        members: np.ndarray,
    ) -> ColdLPResult:
        """``max Σ_{i in members} x_i`` with served loads in ``[x_lower, x_upper]``."""
        pb = np.column_stack([self.p_lower, available_mw])
        xb = np.column_stack([x_lower, x_upper])
        cost = np.r_[np.zeros_like(available_mw), -members.astype(float)]
        sol = self.solve(cost, pb, xb)
        if sol.ok:
            sol = ColdLPResult(True, -sol.objective, sol.p_mw, sol.served_mw)
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
        ok &= intervals["status"].map(status_verified).to_numpy(dtype=bool)
    scarce = bool_array(intervals["scarce"])
    t = intervals["t"].to_numpy()
    return np.sort(t[ok & scarce]), np.sort(t[ok & ~scarce])


#: Default tolerance on a replayed node allocation: ``rel · max_i d_i + abs`` MW, per rule.
#: Leximin (successive LPs): measured gaps up to 0.42 of this bound (the allocator's fixing
#: band amplified by the network; module docstring), beyond it only through a
#: :class:`~fpamm_opt.verify.cold.LeximinCertificate`.
ALLOC_TOL_LP: tuple[float, float] = (1e-4, 1e-4)
#: QP (strongly convex; cold HiGHS QP against the run's scaled, warm one): measured gaps up
#: to 0.01 of this bound, so the LP bound is kept rather than a looser 1e-3.
ALLOC_TOL_QP: tuple[float, float] = (1e-4, 1e-4)


@dataclass(frozen=True)
class ClearingClaim:
    """Which clearing a run says it used (from its manifest)."""

    #: ``"maxmin"``, ``"qp"``, or None when the manifest records no mechanism at all
    rule: str | None
    tier_energy: str
    #: the status marks the final clear's rule per tier (manifest version >= 2,
    #: :data:`~fpamm_opt.io.manifest.FINAL_RULE_VERSION`)
    final_marks: bool = False

    def describe(self) -> str:
        if self.rule is None:
            return "no within-tier rule recorded: tier totals only"
        return f"rule {self.rule}, tier_energy {self.tier_energy}"


def clearing_claim(manifest: Mapping[str, Any] | Manifest) -> ClearingClaim:
    """``mechanism_resolved.rule`` / ``.tier_energy`` of the manifest, with defaults.

    A manifest with a ``mechanism_resolved`` section (every run-loop manifest) gets
    :data:`~fpamm_opt.io.manifest.DEFAULT_RULE` /
    :data:`~fpamm_opt.io.manifest.DEFAULT_TIER_ENERGY` for a missing key (older versions
    did not record ``tier_energy`` and always served a tier's maximum). Without that
    section the rule is taken from ``spec.mechanism.rule`` or a top-level ``rule``; a
    manifest that names no rule anywhere (a hand-built run) claims only the lexicographic
    tier totals (``rule=None``). Read through :class:`~fpamm_opt.io.manifest.Manifest`.
    """
    m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    if m.rule not in (None, "maxmin", "qp"):
        raise VerificationError(f"unknown within-tier rule {m.rule!r} in the manifest")
    if m.tier_energy not in ("free", "max"):
        raise VerificationError(f"unknown tier_energy {m.tier_energy!r} in the manifest")
    return ClearingClaim(m.rule, m.tier_energy, m.marks_final_rule)


def check_cold_resolve(
    run: RunData | str | Path,
    sample: int | None = DEFAULT_COLD_SAMPLE,
    seed: int = 0,
    rel_tol: float = 1e-6,
    tier_rel_tol: float = 2e-6,
    tier_abs_tol_mw: float = 2e-5,
    alloc_tol: tuple[float, float] | None = None,
) -> CheckResult:
    """T3 cold re-solve of up to ``sample`` executed, optimally solved intervals.

    About half the sample is scarce intervals (seeded choice); ``sample=None`` re-solves
    every one of them (``fpamm verify --cold-sample all``) and the detail reports the
    disagreement rate among scarce intervals.

    - Non-scarce interval (or any interval of an ``lmp`` run): the screen's least-cost LP
      (linear prices, see :func:`linear_price`, shedding at ``voll``) must have the stored
      dispatch's cost (plus ``voll`` times its shedding) within ``rel_tol`` relative; for
      ``fpamm`` / ``equal`` runs both the cold LP's shedding and the stored one must stay
      within ``rel_tol + scarcity_tol`` of total demand (the screen calls an interval scarce
      only above ``scarcity_tol``).
    - Scarce interval of an ``fpamm`` / ``equal`` run: the clearing the manifest claims
      (:func:`clearing_claim`: ``rule`` maxmin/qp, ``tier_energy`` free/max) is replayed cold
      by :func:`fpamm_opt.verify.cold.replay_clearing` with the stored weights and tier
      order, each tier with earlier tiers at their stored values; every tier's replayed node
      allocation must equal the stored one: ``max_i |x_cold - x_stored| <= rel · max_i d_i +
      abs`` MW with ``(rel, abs) = alloc_tol`` (default :data:`ALLOC_TOL_LP` /
      :data:`ALLOC_TOL_QP`). A tier beyond that bound passes only with a certificate,
      named in the detail: a max-min tier with a
      :class:`~fpamm_opt.verify.cold.LeximinCertificate` (ill-conditioned leximin, see the
      module docstring), a QP tier with a :class:`~fpamm_opt.verify.cold.QPCertificate`
      (a tier very sensitive to binding branch limits). A tier whose QP the run recorded as replaced
      by the max-min LPs (``qp[k]:...->maxmin`` in the status) may match either rule.
      Intervals whose status records a clearing error are skipped (their stored allocation
      may be the screen's) and counted in the detail.
    - A manifest naming no rule (hand-built runs): each tier's stored total must equal
      ``max Σ_{i in k} x_i`` (earlier tiers fixed, later at 0) within ``max(tier_rel_tol ·
      Σ d, tier_abs_tol_mw)``: twice the allocator's slack on a tier's energy.

    Returns
    -------
    CheckResult
        At the re-solve where gap / tolerance is largest: ``measured`` is the gap and
        ``bound`` its tolerance, relative (cost gap / cost, shortfall / demand, tier-total gap
        / demand), in MW (replayed node allocations) or in weighted-shortfall units
        (certified max-min tiers); ``detail`` names the interval (and tier, node) and the
        units, failures worst first.
    """
    run = as_run(run)
    name = CheckName.T3_COLD_RESOLVE
    ctx = run.context
    intervals = run.table("intervals")
    scarce_ts, normal_ts = _candidates(intervals)
    lmp = ctx.policy == "lmp"
    claim = clearing_claim(run.manifest)
    if ctx.cost_model is not CostModel.LINEAR:
        if lmp:
            return not_applicable(name, STATEMENT_COLD, f"cost model {ctx.cost_model!s} is not LP")
        normal_ts = normal_ts[:0]
    if lmp:
        normal_ts, scarce_ts = np.sort(np.r_[normal_ts, scarce_ts]), scarce_ts[:0]
    scarce_ts, n_errors = _without_errors(intervals, scarce_ts)
    if scarce_ts.size + normal_ts.size == 0:
        return not_applicable(name, STATEMENT_COLD, "no executed, optimally solved interval")
    picked_s, picked_n = _pick(scarce_ts, normal_ts, sample, seed)
    net = run.network
    a = interval_arrays(run, net, branches=False)
    orders = intervals.set_index("t")["tier_order"] if "tier_order" in intervals.columns else None
    found = _Findings(rel_tol)
    if picked_n.size:
        _least_cost_resolves(a, net, ctx, picked_n, lmp, rel_tol, found.note)
    certified: list[str] = []
    if picked_s.size and claim.rule is None:
        _tier_totals(a, net, picked_s, orders, tier_rel_tol, tier_abs_tol_mw, found.note)
    elif picked_s.size:
        rel, abs_mw = alloc_tol or (ALLOC_TOL_QP if claim.rule == "qp" else ALLOC_TOL_LP)
        certified = _replay(run, a, net, picked_s, orders, claim, rel, abs_mw, found.note)
    summary = _cold_summary(found, picked_n, picked_s, lmp, claim, certified, n_errors)
    return found.result(name, summary)


def _without_errors(intervals: pd.DataFrame, scarce_ts: np.ndarray) -> tuple[np.ndarray, int]:
    """The scarce intervals whose status records no solve that failed for good (their stored
    allocation may be the screen's), and how many were left out."""
    if not (scarce_ts.size and "status" in intervals.columns):
        return scarce_ts, 0
    st = intervals.set_index("t")["status"].astype(str)
    clean = ~st.reindex(scarce_ts).map(status_solve_error).to_numpy(dtype=bool)
    return scarce_ts[clean], int((~clean).sum())


def _pick(
    scarce_ts: np.ndarray, normal_ts: np.ndarray, sample: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The seeded sample of scarce and non-scarce intervals (about half scarce)."""
    rng = np.random.default_rng(seed)
    if sample is None:
        n_s, n_n = scarce_ts.size, normal_ts.size
    else:
        n_s = min(scarce_ts.size, math.ceil(sample / 2))
        n_n = min(normal_ts.size, sample - n_s)
        n_s = min(scarce_ts.size, sample - n_n)
    return _sample(scarce_ts, n_s, rng), _sample(normal_ts, n_n, rng)


class _Findings:
    """The gaps of the cold re-solves: the worst (gap / tolerance) and every failure."""

    def __init__(self, rel_tol: float) -> None:
        self.problems: list[tuple[float, int, str]] = []  # (ratio, order seen, description)
        self.failed_ts: set[int] = set()
        self.w_ratio, self.w_gap, self.w_tol, self.w_desc = -1.0, 0.0, rel_tol, ""

    def note(self, t: int, gap: float, tol: float, desc: str) -> None:
        """Record a gap of interval ``t`` (a failure when ``gap > tol``)."""
        ratio = gap / tol if tol > 0 else math.inf
        if ratio > self.w_ratio:
            self.w_ratio, self.w_gap, self.w_tol, self.w_desc = ratio, gap, tol, desc
        if gap > tol:
            self.problems.append((ratio, len(self.problems), desc))
            self.failed_ts.add(t)

    def result(self, name: CheckName, kinds: str) -> CheckResult:
        """The check's result: the worst gap, and the failures worst first."""
        passed = not self.problems
        if passed:
            detail = f"{kinds}; worst: {self.w_desc}" if self.w_desc else kinds
        else:
            # Worst first (gap / tolerance), so the detail always names the worst interval.
            worst = [desc for _, _, desc in sorted(self.problems, key=lambda p: (-p[0], p[1]))]
            more = f" (+{len(worst) - 5} more)" if len(worst) > 5 else ""
            detail = f"{kinds}; FAILED (worst first): " + "; ".join(worst[:5]) + more
        return CheckResult(name, STATEMENT_COLD, self.w_gap, self.w_tol, passed, True, detail)


def _cold_summary(
    found: _Findings,
    picked_n: np.ndarray,
    picked_s: np.ndarray,
    lmp: bool,
    claim: ClearingClaim,
    certified: list[str],
    n_errors: int,
) -> str:
    """The detail's first part: what was re-solved, the disagreement rate among scarce
    intervals, certified tiers and scarce intervals not sampled."""
    out = (
        f"{picked_n.size} {'lmp' if lmp else 'non-scarce'} and {picked_s.size} scarce "
        f"intervals ({claim.describe()}) re-solved cold"
    )
    if picked_s.size:
        n_bad = len(found.failed_ts.intersection(int(t) for t in picked_s))
        out += (
            f"; {n_bad} of {picked_s.size} scarce intervals disagree "
            f"({100.0 * n_bad / picked_s.size:.2f}%)"
        )
    if certified:
        out += (
            f" ({len(certified)} tier{'s' if len(certified) > 1 else ''} off by more than the "
            f"MW tolerance but certified (leximin within the allocator's band, or QP optimality "
            f"by its KKT conditions at the stored point): "
            f"{', '.join(certified[:3])}{' ...' if len(certified) > 3 else ''})"
        )
    if n_errors:
        out += (
            f" ({n_errors} scarce interval{'s' if n_errors > 1 else ''} with a recorded "
            "clearing error not sampled)"
        )
    return out


def _least_cost_resolves(
    a: IntervalArrays,
    net: NetworkData,
    ctx: RunContext,
    picked_n: np.ndarray,
    lmp: bool,
    rel_tol: float,
    note: Callable[[int, float, float, str], None],
) -> None:
    """Cold least-cost re-solves (the screen's problem) of the non-scarce (or lmp) sample."""
    cold = ColdClearing(net)
    price = linear_price(net, ctx.cost_model)
    for t in picked_n:
        k = a.row(t)
        d, avail, p, x = a.demand_mw[k], a.available_mw[k], a.p_mw[k], a.served_mw[k]
        total = float(d.sum())
        # The screen's own problem (least cost, shedding at VOLL): an interval is non-scarce
        # when it sheds at most ``scarcity_tol`` of demand, not when it sheds nothing, so
        # requiring full service here rejected correct runs (IEEE-118, max-min, seed 61,
        # t = 601: 0.0013 MW shed by the network, 2.7e-7 of demand).
        stored = float(price @ p) + ctx.voll * float((d - x).sum())
        sol = cold.solve(
            avail, np.zeros_like(d), d, cost_gen=price, cost_served=np.full(d.size, -ctx.voll)
        )
        if not sol.ok:
            note(
                int(t), math.inf, rel_tol, f"t={t}: cold least-cost re-solve failed ({sol.message})"
            )
            continue
        objective = sol.objective + ctx.voll * total
        gap = abs(objective - stored) / max(1.0, abs(stored))
        note(
            int(t),
            gap,
            rel_tol,
            f"t={t}: least-cost {objective:.8g} $/h vs stored dispatch "
            f"{stored:.8g} $/h (relative gap {gap:.3g}; shedding at VOLL {ctx.voll:g} $/MWh)",
        )
        if not lmp:
            cold_shed = float((d - sol.served_mw).sum()) / max(total, 1e-12)
            note(
                int(t),
                cold_shed,
                rel_tol + ctx.scarcity_tol,
                f"t={t}: marked non-scarce but the network sheds {cold_shed:.3g} of demand "
                f"(scarcity tolerance {ctx.scarcity_tol:g})",
            )
            short = float(np.abs(d - x).sum()) / max(total, 1e-12)
            note(
                int(t),
                short,
                rel_tol + ctx.scarcity_tol,
                f"t={t}: non-scarce interval does not serve all demand "
                f"({float((d - x).sum()):.6g} MW short)",
            )


#: What a run recorded of one interval's tiers: QP replaced by max-min in some clear; in
#: the final clear (None: the run does not say); max-min stopped at its round cap.
TierMarks = tuple[frozenset[int], frozenset[int] | None, frozenset[int]]


def recorded_marks(run: RunData, claim: ClearingClaim) -> Callable[[int], TierMarks]:
    """The tier marks of each interval: from the typed ``events`` table, or, for runs
    written before it existed, parsed from the ``intervals.status`` text (final marks only
    when the manifest's version wrote them, ``claim.final_marks``)."""
    if run.has("events"):
        ev = run.table("events")
        tiers = ev["tier"].astype("Int64")
        by: dict[tuple[int, str], set[int]] = {}
        for t, kind, tier in zip(ev["t"].to_numpy(), ev["kind"].astype(str), tiers, strict=True):
            if not pd.isna(tier):
                by.setdefault((int(t), kind), set()).add(int(tier))

        def from_events(t: int) -> TierMarks:
            def get(kind: ClearEventKind) -> frozenset[int]:
                return frozenset(by.get((t, kind.value), ()))

            return (
                get(ClearEventKind.QP_FALLBACK),
                get(ClearEventKind.FINAL_MAXMIN),
                get(ClearEventKind.ROUNDS_CAPPED),
            )

        return from_events
    intervals = run.table("intervals")
    status = (
        intervals.set_index("t")["status"].astype(str) if "status" in intervals.columns else None
    )

    def from_text(t: int) -> TierMarks:
        text = str(status.get(t, "")) if status is not None else ""
        final = frozenset(int(m) for m in FINAL_RULE_RE.findall(text))
        return (
            frozenset(int(m) for m in QP_FALLBACK_RE.findall(text)),
            final if claim.final_marks else None,
            frozenset(int(m) for m in ROUNDS_CAPPED_RE.findall(text)),
        )

    return from_text


def _replay(
    run: RunData,
    a: IntervalArrays,
    net: NetworkData,
    picked: np.ndarray,
    orders: pd.Series | None,
    claim: ClearingClaim,
    rel: float,
    abs_mw: float,
    note: Callable[[int, float, float, str], None],
) -> list[str]:
    """Replay the claimed clearing of the ``picked`` scarce intervals (see the caller).

    Returns the tiers (as ``"t=.. tier .."``, with the MW difference) that matched only
    through a :class:`~fpamm_opt.verify.cold.LeximinCertificate`.
    """
    assert claim.rule is not None
    tw, node, wa = pivot(run.table("nodes"), "node", ["weight"], table="nodes")
    _aligned(node, net.n_node, "nodes")
    if not np.array_equal(tw, a.t):
        raise VerificationError("the nodes table has weights for other intervals")
    weights = wa["weight"]
    marks_of = recorded_marks(run, claim)
    model = ColdClearing(net)
    certified: list[str] = []
    for t in picked:
        k = a.row(t)
        d, avail, x, w = a.demand_mw[k], a.available_mw[k], a.served_mw[k], weights[k]
        fallback, final_maxmin, capped = marks_of(int(t))
        tol = rel * float(np.max(d, initial=0.0)) + abs_mw
        order = parse_tier_order(orders.get(t) if orders is not None else None)
        if order is None:
            note(int(t), math.inf, tol, f"t={t}: scarce interval without a tier_order")
            continue
        if not np.all(np.isfinite(w) & (w > 0)):
            note(int(t), math.inf, tol, f"t={t}: stored weights are not all positive and finite")
            continue
        text = ">".join(map(str, order))
        replay = replay_clearing(
            model,
            d,
            avail,
            x,
            w,
            a.tier,
            order,
            claim.rule,
            claim.tier_energy,
            qp_fallback_tiers=fallback,
            certify_above_mw=tol,
            final_maxmin_tiers=final_maxmin,
            stored_p_mw=a.p_mw[k],
        )
        for r in replay:
            if not r.ok:
                why = f"; {r.certificate.describe()}" if r.certificate is not None else ""
                note(
                    int(t),
                    math.inf,
                    tol,
                    f"t={t}: tier {r.tier} cold re-solve failed with earlier tiers at their "
                    f"stored values ({r.message}; order {text}){why}",
                )
                break
            if r.node < 0:
                continue
            marks = (fallback, final_maxmin, capped)
            desc = _gap_desc(int(t), r, net, x, a.tier, tol, text, claim, marks)
            label = _judge_tier(int(t), r, desc, tol, note)
            if label is not None:
                certified.append(label)
        _note_outside_order(int(t), x, a.tier, order, tol, note)
    return certified


def _judge_tier(
    t: int, r: TierReplay, desc: str, tol: float, note: Callable[[int, float, float, str], None]
) -> str | None:
    """Note the gap of a replayed tier of interval ``t``; return its label when it passes
    only through a certificate."""
    cert = r.certificate
    if r.certified_only and cert is not None:
        note(t, cert.excess, cert.tol, f"t={t}: tier {r.tier}: {cert.describe()}")
        return f"t={t} tier {r.tier} (no cold QP answer: {r.notes[-1]})"
    if cert is None or r.gap_mw <= tol:
        note(t, r.gap_mw, tol, desc)
        return None
    if cert.passed:
        # The rule's answer within the allocator's band (max-min) or the network's flow
        # margin (QP), at another point of an ill-conditioned tier: measured in the
        # certificate's own units (levels, objective).
        note(t, cert.excess, cert.tol, f"{desc}; {cert.describe()}")
        return f"t={t} tier {r.tier} ({r.gap_mw:.3g} MW at node {r.node})"
    note(t, r.gap_mw, tol, f"{desc}; {cert.describe()}")
    return None


def _gap_desc(
    t: int,
    r: TierReplay,
    net: NetworkData,
    x: np.ndarray,
    tier: np.ndarray,
    tol: float,
    text: str,
    claim: ClearingClaim,
    marks: TierMarks,
) -> str:
    """The description of a replayed tier's largest node gap ``r`` at interval ``t``."""
    fallback, final_maxmin, capped = marks
    j = r.node
    how = f"cold {r.rule or claim.rule}, tier_energy {claim.tier_energy}"
    if final_maxmin is not None and r.tier in final_maxmin:
        how += f" (the run's final clear replaced qp[{r.tier}] by maxmin)"
    elif r.tier in fallback:
        how += f" (the run recorded qp[{r.tier}]->maxmin in some clear)"
    if r.tier in capped:
        how += f" (the run recorded maxmin[{r.tier}]:rounds-capped)"
    return (
        f"t={t}: tier {r.tier} node {j} (bus {int(net.node_ids[j])}) stored "
        f"{x[j]:.8g} MW, {how} {r.cold_mw[j]:.8g} MW (|gap| {r.gap_mw:.3g} MW, "
        f"tolerance {tol:.3g} MW; order {text}, tier total stored "
        f"{float(x[tier == r.tier].sum()):.8g} MW vs cold "
        f"{float(np.nansum(r.cold_mw[tier == r.tier])):.8g} MW)"
    )


def _note_outside_order(
    t: int,
    x: np.ndarray,
    tier: np.ndarray,
    order: list[int],
    tol: float,
    note: Callable[[int, float, float, str], None],
) -> None:
    """Nodes of tiers outside the order get nothing: note the largest one served."""
    out = ~np.isin(tier, order)
    if out.any():
        text = ">".join(map(str, order))
        j = int(np.argmax(np.where(out, np.abs(x), -1.0)))
        note(
            t,
            abs(float(x[j])),
            tol,
            f"t={t}: node {j} of tier {int(tier[j])}, absent from order {text}, "
            f"served {x[j]:.8g} MW",
        )


def _tier_totals(
    a: IntervalArrays,
    net: NetworkData,
    picked: np.ndarray,
    orders: pd.Series | None,
    tier_rel_tol: float,
    tier_abs_tol_mw: float,
    note: Callable[[int, float, float, str], None],
) -> None:
    """Lexicographic tier totals only (a manifest that names no within-tier rule)."""
    lp = ColdDCOPF(net)
    for t in picked:
        k = a.row(t)
        d, avail, x = a.demand_mw[k], a.available_mw[k], a.served_mw[k]
        total = max(float(d.sum()), 1e-12)
        tol = max(tier_rel_tol, tier_abs_tol_mw / total)
        order = parse_tier_order(orders.get(t) if orders is not None else None)
        if order is None:
            note(int(t), math.inf, tol, f"t={t}: scarce interval without a tier_order")
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
                    int(t),
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
                int(t),
                gap,
                tol,
                f"t={t}: tier {tier} got {stored:.8g} MW {how} (order "
                f"{'>'.join(map(str, order))}; gap {gap:.3g} of demand)",
            )
            fixed |= members
