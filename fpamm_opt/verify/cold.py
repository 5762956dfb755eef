"""Cold replay of the lexicographic tier clearing (T3), from NumPy arrays on ``highspy``.

:func:`replay_clearing` rebuilds what :meth:`fpamm_opt.problem.AllocationProblem.clear`
computes for one scarce interval, independently of Pyomo and of the run's warm-started
solver: the DC-OPF set ``X(t)`` is written in PTDF form from
:class:`~fpamm_opt.network.NetworkData` arrays (:class:`ColdClearing`) and **every solve is a
fresh** ``highspy`` instance (no basis, no state carried over).

The procedure, tier by tier in the stored order (docs/design.md, ``Allocator.clear``):

1. Earlier tiers are fixed at their **stored** allocation (exactly, or within a band when
   that is infeasible by solver tolerances: :data:`FIX_BANDS`), later tiers at 0.
2. ``Q_k = max Σ_{i in k} x_i``. When ``Q_k >= D_k - tol`` the tier is fully served
   (``tol = max(1e-6 Σ d, 1e-5 MW)``, the allocator's own slack on a tier's energy).
3. ``tier_energy = max``: ``Σ_{i in k} x_i >= Q_k - tol`` is added (the rule redistributes
   the maximum); ``free``: the rule chooses over ``X(t)``.
4. The within-tier rule with the stored weights ``w`` (``v = 1/w``):

   - ``qp``: ``min Σ_{i in k} (w_i / (2 d_i)) x_i² - w_i x_i`` (HiGHS QP via
     ``passHessian``);
   - ``maxmin``: weighted leximin by successive LPs: ``min λ`` s.t. ``x_i + d_i v_i λ >= d_i``
     for the free nodes; bottlenecks are the free nodes whose level row has a positive dual
     share ``|μ_i| d_i v_i > 1e-7`` (``Σ μ_i d_i v_i = 1`` at the optimum), else the tight
     rows; they keep their level through a lower bound ``x_i >= x_i - band``
     (:data:`LEVEL_BAND_REL`, :data:`LEVEL_BAND_ABS_MW`); repeat until no node is free.

Both rules have a unique answer in ``x`` on the tier (the QP is strictly convex in the
tier's loads; the leximin vector is unique and a positive dual row is tight in every optimal
solution of its round), so the replayed allocation must equal the stored one up to solver
tolerances and fixing bands, whatever vertex either solver lands on. Where the run recorded
that a tier's QP failed and the max-min LPs replaced it (``qp[k]:...->maxmin``), either rule's
answer is accepted for that tier (``qp_fallback_tiers``). Runs with manifest version 2 or
later mark the tiers whose *final* clear fell back (``final-rule[k]=maxmin``); for them the
replay uses exactly the rule that produced the stored allocation (``final_maxmin_tiers``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from fpamm_opt.feasible import flow_limits, gen_lower_mw
from fpamm_opt.network import NetworkData

# ``highspy.Highs`` prints a banner when created; the bare core class is silent.
_HighsClass: Any = getattr(highspy, "_Highs", highspy.Highs)
_MS = highspy.HighsModelStatus
_INF = math.inf

#: Bands ``(rel, abs MW)`` around the stored allocation of the tiers cleared earlier, tried
#: in order until the tier's cold solves are feasible: exactly the stored values first, then
#: ``1e-9 d + 1e-9`` (where HiGHS calls the exact values infeasible by its tolerances; the
#: allocator widens the same way, ``pipeline.strategies.FixedLoadSolves.solve``), then ``1e-7 d +
#: 1e-9`` and ``1e-6 d + 1e-6`` (the allocator's last resort, and the band runs written
#: before manifest version 3 fixed earlier tiers in). Tightest first because a band is
#: amplified through congested corridors: on IEEE-118 (seed 29, t = 1539) a later tier's
#: answer moved by 19,000 MW per MW taken from the earlier tier (0.05 MW at 1e-9, 44 MW at
#: 1e-6); on case14 (QP rule, 400 intervals) fixing within ``1e-6 d + 1e-6`` moved a later
#: tier's replay by up to 4.2e-3 MW.
FIX_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1e-9, 1e-9), (1e-7, 1e-9), (1e-6, 1e-6))
#: The allocator's band when a max-min bottleneck keeps its level (problem.py; it was
#: ``1e-7 d + 1e-9`` before the allocator widened it for case118). The replay uses the
#: current value for runs made with either: the difference moves the replayed leximin by
#: far less than the comparison tolerance (module docstring of ``feasibility``).
LEVEL_BAND_REL = 1e-6
LEVEL_BAND_ABS_MW = 1e-6
#: The allocator's current fixing band ``(rel, abs MW)`` (problem.py), used to express the
#: tolerance of a :class:`LeximinCertificate` in level units.
RUN_BAND: tuple[float, float] = (1e-6, 1e-6)
#: Tolerance of the certificate's level comparison, in multiples of the allocator's band.
LEX_TOL_FACTOR = 10.0
#: Activity tolerance of a :class:`QPCertificate`: a constraint within ``rel · size + abs``
#: (MW; size = rating, capacity, demand) of its limit counts as active at the stored point.
#: The absolute part is the run's own feasibility tolerance (``KKT_FEAS_ABS_MW``): the
#: stored generator outputs come from the final least-cost dispatch, not from the tier's own
#: solve, and can leave a limit that bound in the tier's solve a few 1e-6 MW slack (IEEE-118
#: equal weights, seed 13, t = 757: 5e-6 MW; with 1e-7 the certificate failed with residual
#: 0.34). A tier given less than the rule gives it leaves far more slack than 1e-5 MW behind
#: (1e-4 MW on the binding branch at seed 29, t = 1539, still rejected).
KKT_ACTIVE_REL = 1e-7
KKT_ACTIVE_ABS = 1e-5
#: Stationarity tolerance of a :class:`QPCertificate`, relative to the tier's largest weight.
KKT_RESIDUAL_REL = 1e-6
#: Feasibility tolerance of the point a :class:`QPCertificate` is checked at: the run
#: loop's own (``sim.run.FEAS_TOL_*``: ``1e-5`` MW plus ``1e-6`` of demand or rating).
KKT_FEAS_REL = 1e-6
KKT_FEAS_ABS_MW = 1e-5
#: Dual share ``|μ_i| coef_i`` above which a level row is a bottleneck (problem.py).
BOTTLENECK_SHARE = 1e-7
#: Time limit of one cold solve (s); a solve that hits it counts as failed (next attempt).
SOLVE_TIME_LIMIT_S = 60.0
#: ``qp_regularization_value`` tried in order for the QP (0 first, like the run's fast path:
#: HiGHS's default 1e-7 moves the optimum by ~1e-4 MW on case14).
QP_REGULARIZATION: tuple[float, ...] = (0.0, 1e-9, 1e-7)


def tier_slack_mw(demand_mw: np.ndarray) -> float:
    """The allocator's slack on a tier's energy: ``max(1e-6 Σ d, 1e-5)`` MW."""
    return max(1e-6 * float(np.sum(demand_mw)), 1e-5)


@dataclass(frozen=True, eq=False)
class ColdSolve:
    """Outcome of one cold solve."""

    ok: bool
    p_mw: np.ndarray
    served_mw: np.ndarray
    level: float = math.nan
    #: ``(n_node,)`` row duals of the level rows (0 for nodes without a row), or None
    level_duals: np.ndarray | None = None
    objective: float = math.nan
    message: str = ""


class ColdClearing:
    """``X(t)`` in PTDF form for ``highspy``; matrices built once, a fresh solver per solve.

    Columns ``(p, x[, λ])``: generator outputs in ``[min(pmin, 0), available]``, served loads
    in the given bounds, the max-min level ``λ >= 0`` when a level is asked for. Rows: one
    balance per island ``Σ p - Σ x = Σ fixed withdrawal``; one ranged row per branch with a
    finite limit, ``lo - c <= PTDF (A_g p - A_n x) <= hi - c`` with
    ``c = PTDF (shift_inj - fixed) - shift_flow`` and ``(lo, hi)`` the flow limits (rating and
    angle limits); then the optional level rows and tier-total row.
    """

    def __init__(self, net: NetworkData) -> None:
        self.net = net
        ng, nn = net.n_gen, net.n_node
        self.n_gen, self.n_node = ng, nn
        h = np.asarray(net.ptdf, dtype=float)
        const = h @ (net.shift_injection_mw - net.bus_fixed_withdrawal_mw) - net.shift_flow_mw
        f_lo, f_hi = flow_limits(net)
        lim = np.isfinite(f_lo) | np.isfinite(f_hi)
        hv = np.hstack([h[lim][:, net.gen_bus], -h[lim][:, net.node_bus]])
        rows: list[sp.csr_matrix] = [sp.csr_matrix(hv)]
        lo: list[np.ndarray] = [np.where(np.isfinite(f_lo[lim]), f_lo[lim] - const[lim], -_INF)]
        hi: list[np.ndarray] = [np.where(np.isfinite(f_hi[lim]), f_hi[lim] - const[lim], _INF)]
        bal, rhs = [], []
        for isl in np.unique(net.bus_island):
            g = (net.bus_island[net.gen_bus] == isl).astype(float)
            n = (net.bus_island[net.node_bus] == isl).astype(float)
            if not (g.any() or n.any()):
                continue
            bal.append(np.r_[g, -n])
            rhs.append(float(net.bus_fixed_withdrawal_mw[net.bus_island == isl].sum()))
        if bal:
            rows.insert(0, sp.csr_matrix(np.array(bal)))
            lo.insert(0, np.array(rhs))
            hi.insert(0, np.array(rhs))
        self.a = sp.vstack(rows, format="csr")
        self.row_lo = np.concatenate(lo)
        self.row_hi = np.concatenate(hi)
        self.p_lower = gen_lower_mw(net)
        #: rows of the branch limits, and each one's rating (MW; activity tolerances of the KKT certificate)
        self.flow_rows = np.arange(len(bal), len(bal) + int(lim.sum()))
        rating = np.fmax(np.abs(np.where(np.isfinite(f_lo), f_lo, 0.0)), np.abs(f_hi))
        self.flow_rating_mw = np.where(np.isfinite(rating), rating, 0.0)[lim]

    def solve(
        self,
        available_mw: np.ndarray,
        x_lower: np.ndarray,
        x_upper: np.ndarray,
        *,
        cost_served: np.ndarray | None = None,
        cost_gen: np.ndarray | None = None,
        hessian_served: np.ndarray | None = None,
        level: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        tier_total: tuple[np.ndarray, float] | None = None,
        contain: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ColdSolve:
        """One cold solve over ``X`` with served loads in ``[x_lower, x_upper]``.

        Parameters
        ----------
        available_mw : (n_gen,)
            Upper bounds of the generator outputs.
        x_lower, x_upper : (n_node,)
            Bounds of the served loads.
        cost_served : (n_node,), optional
            Linear cost of the served loads (minimised).
        cost_gen : (n_gen,), optional
            Linear cost of the generator outputs ($/MWh).
        hessian_served : (n_node,), optional
            Diagonal ``q`` of ``Σ q_i x_i² / 2`` (a QP).
        level : (mask, coef, rhs), optional
            Add ``λ >= 0`` with cost 1 and rows ``x_i + coef_i λ >= rhs_i`` for ``mask``.
        tier_total : (members, q), optional
            Add ``Σ_{members} x_i >= q``.
        contain : (p, x), optional
            A stored point that must be feasible: each balance and branch row, and each
            generator bound, is widened just enough to hold it (by at most its violation,
            which T3-feasibility bounds). Earlier tiers fixed exactly at their stored values
            then never make the problem infeasible by solver tolerances.
        """
        prob = self._problem(
            available_mw, x_lower, x_upper, cost_served, cost_gen, level, tier_total
        )
        if contain is not None:
            prob.contain(self.a, *contain)
        hess = None if hessian_served is None else np.asarray(hessian_served, dtype=float)
        return self._run(prob, hess)

    def _problem(
        self,
        available_mw: np.ndarray,
        x_lower: np.ndarray,
        x_upper: np.ndarray,
        cost_served: np.ndarray | None,
        cost_gen: np.ndarray | None,
        level: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
        tier_total: tuple[np.ndarray, float] | None,
    ) -> _ColdProblem:
        """Columns ``(p, x[, λ])``, the network rows, then the level and tier-total rows."""
        ng, nn = self.n_gen, self.n_node
        n_col = ng + nn + (1 if level is not None else 0)
        cost = np.zeros(n_col)
        if cost_served is not None:
            cost[ng : ng + nn] = cost_served
        if cost_gen is not None:
            cost[:ng] = cost_gen
        col_lo = np.r_[self.p_lower, x_lower, [0.0] if level is not None else []]
        col_hi = np.r_[available_mw, x_upper, [_INF] if level is not None else []]
        a = self.a
        r_lo, r_hi = [self.row_lo], [self.row_hi]
        extra: list[sp.csr_matrix] = []
        level_rows = np.zeros(0, dtype=int)
        if level is not None:
            a = sp.hstack([a, sp.csr_matrix((a.shape[0], 1))], format="csr")
            mask, coef, rhs = level
            level_rows = np.flatnonzero(mask)
            k = level_rows.size
            data = np.r_[np.ones(k), coef[level_rows]]
            ri = np.r_[np.arange(k), np.arange(k)]
            ci = np.r_[ng + level_rows, np.full(k, ng + nn)]
            extra.append(sp.csr_matrix((data, (ri, ci)), shape=(k, n_col)))
            r_lo.append(np.asarray(rhs, dtype=float)[level_rows])
            r_hi.append(np.full(k, _INF))
            cost[-1] = 1.0
        if tier_total is not None:
            members, q = tier_total
            row = np.zeros((1, n_col))
            row[0, ng : ng + nn] = np.asarray(members, dtype=float)
            extra.append(sp.csr_matrix(row))
            r_lo.append(np.array([float(q)]))
            r_hi.append(np.array([_INF]))
        if extra:
            a = sp.vstack([a, *extra], format="csr")
        return _ColdProblem(
            ng, nn, cost, col_lo, col_hi, a, np.concatenate(r_lo), np.concatenate(r_hi),
            level is not None, level_rows, self.a.shape[0],
        )  # fmt: skip

    def _run(self, prob: _ColdProblem, hessian_served: np.ndarray | None) -> ColdSolve:
        """Solve ``prob`` on a fresh HiGHS instance per attempt (:func:`_attempts`)."""
        message = ""
        for opts in _attempts(hessian_served is not None):
            h = prob.highs(opts, hessian_served)
            h.run()
            ms = h.getModelStatus()
            if ms != _MS.kOptimal:
                message = h.modelStatusToString(ms)
                continue
            tag = " ".join(f"{k}={v}" for k, v in opts.items() if _DEFAULTS.get(k) != v)
            return prob.solution(h, tag)
        nan_p, nan_x = np.full(prob.ng, np.nan), np.full(prob.nn, np.nan)
        return ColdSolve(False, nan_p, nan_x, message=message)


@dataclass(eq=False)
class _ColdProblem:
    """One cold problem's arrays (columns ``(p, x[, λ])``, CSR rows) as HiGHS takes them."""

    ng: int
    nn: int
    cost: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    a: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    has_level: bool
    level_rows: np.ndarray
    first_level_row: int

    def contain(self, net_rows: sp.csr_matrix, p_c: np.ndarray, x_c: np.ndarray) -> None:
        """Widen the network rows and generator bounds just enough to hold ``(p_c, x_c)``."""
        act = net_rows @ np.r_[p_c, x_c]
        nb, ng = net_rows.shape[0], self.ng
        self.row_lo[:nb] = np.minimum(self.row_lo[:nb], act)
        self.row_hi[:nb] = np.maximum(self.row_hi[:nb], act)
        self.col_lo[:ng] = np.minimum(self.col_lo[:ng], p_c)
        self.col_hi[:ng] = np.maximum(self.col_hi[:ng], p_c)

    def highs(self, opts: dict[str, Any], hessian_served: np.ndarray | None) -> Any:
        """A fresh HiGHS instance holding the problem, with options ``opts``."""
        h = _HighsClass()
        n_col, a = self.cost.size, self.a
        limits: dict[str, Any] = {"time_limit": SOLVE_TIME_LIMIT_S}
        if hessian_served is not None:
            # HiGHS's active-set QP solver can cycle; its default limit is effectively
            # infinite (the run's fast path caps it the same way).
            limits["qp_iteration_limit"] = max(1000, 10 * (n_col + a.shape[0]))
        for key, value in {"output_flag": False, "threads": 1, **limits, **opts}.items():
            h.setOptionValue(key, value)
        none_i, none_f = np.zeros(0, dtype=np.int32), np.zeros(0)
        h.addCols(n_col, self.cost, self.col_lo, self.col_hi, 0, none_i, none_i, none_f)
        h.addRows(
            a.shape[0],
            self.row_lo,
            self.row_hi,
            int(a.nnz),
            a.indptr[:-1].astype(np.int32),
            a.indices.astype(np.int32),
            a.data.astype(float),
        )
        h.changeObjectiveSense(highspy.ObjSense.kMinimize)
        if hessian_served is not None:
            _pass_diagonal_hessian(h, n_col, self.ng, hessian_served)
        return h

    def solution(self, h: Any, tag: str) -> ColdSolve:
        """The optimal point of ``h`` (level-row duals when there is a level)."""
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        ng, nn = self.ng, self.nn
        duals = None
        if self.has_level and sol.dual_valid:
            y = np.asarray(sol.row_dual)
            duals = np.zeros(nn)
            k = self.level_rows.size
            duals[self.level_rows] = y[self.first_level_row : self.first_level_row + k]
        return ColdSolve(
            True,
            x[:ng].copy(),
            x[ng : ng + nn].copy(),
            float(x[-1]) if self.has_level else math.nan,
            duals,
            float(h.getInfo().objective_function_value),
            tag,
        )


#: The options the first attempt sets (a retry's message names what it changed).
_DEFAULTS: dict[str, Any] = {"qp_regularization_value": QP_REGULARIZATION[0]}


def _attempts(qp: bool) -> list[dict[str, Any]]:
    """HiGHS option sets tried in order, each on a fresh instance.

    A max-min round whose level is already ~0 (``λ ~ 1e-7``, the tier total held at its
    maximum) leaves a sliver of a feasible set: the previous round's point satisfies every
    row to 5e-8 and the new round only relaxes bounds, yet HiGHS's dual simplex has called
    it infeasible (case118, tier_energy max). The retries turn presolve off, allow 1e-6 MW
    of row infeasibility, use the primal simplex, then the interior point method (with
    crossover, so the duals of the level rows are still vertex duals). None of this touches
    the comparison tolerance on the allocation.
    """
    if not qp:
        return [
            {},
            {"presolve": "off"},
            {"primal_feasibility_tolerance": 1e-6},
            {"simplex_strategy": 4},
            {"solver": "ipm"},
        ]
    out: list[dict[str, Any]] = [
        {"qp_regularization_value": r, "presolve": p}
        for r in QP_REGULARIZATION
        for p in ("choose", "off")
    ]
    out[0] = {"qp_regularization_value": QP_REGULARIZATION[0]}
    return out


def _pass_diagonal_hessian(h: Any, n_col: int, ng: int, q: np.ndarray) -> None:
    """Diagonal Hessian ``q`` on the served-load columns (HiGHS: ``½ x'Qx``)."""
    nz = np.flatnonzero(q != 0.0)
    cols = (ng + nz).astype(np.int32)
    start = np.searchsorted(cols, np.arange(n_col), side="left").astype(np.int32)
    h.passHessian(
        n_col, int(nz.size), highspy.HessianFormat.kTriangular, start, cols, q[nz].astype(float)
    )


@dataclass(frozen=True, eq=False)
class TierReplay:
    """One tier of a replayed clearing, compared with the stored allocation."""

    tier: int
    ok: bool  #: every cold solve of the tier was optimal
    cold_mw: np.ndarray  #: (n_node,) replayed allocation (tier members; nan elsewhere)
    deliverable_mw: float  #: ``Q_k`` with earlier tiers at their stored values
    gap_mw: float  #: ``max |x_cold - x_stored|`` over the tier's members (inf when not ok)
    node: int  #: member with the largest gap (-1 for an empty tier)
    rule: str = ""  #: rule replayed (``maxmin`` for a recorded QP fallback that matched)
    rounds: int = 0  #: max-min rounds (1 for the QP, 0 when fully served / empty)
    message: str = ""
    notes: list[str] = field(default_factory=list)
    #: for a max-min tier whose allocation differs by more than the tolerance asked for
    certificate: LeximinCertificate | QPCertificate | None = None
    #: no cold QP answer (HiGHS stopped): the stored allocation passed on its certificate
    certified_only: bool = False


@dataclass(frozen=True)
class LeximinCertificate:
    """Whether a stored max-min allocation is leximin-optimal within the allocator's band.

    The weighted leximin point is unique, but it is ill-conditioned where a bottleneck's
    level-row dual is small: the allocator fixes each bottleneck only within ``1e-6 d +
    1e-6`` MW, and that much slack on many nodes can buy a node whose dual is ~1e-5 almost a
    megawatt (measured: case118, 0.85 MW for a 2e-5 change of the common level). Two points
    that both follow the procedure can then differ by far more than the MW tolerance while
    their level vectors agree to the band. The certificate checks the claim itself:

    - the stored tier allocation, with earlier tiers at their stored values and later ones
      at 0, lies in ``X(t)`` (and holds the tier total for ``tier_energy = max``);
    - its weighted shortfall levels ``u_i w_i`` sorted in decreasing order are
      lexicographically no worse than the replay's: walking the two sorted vectors, the
      stored one never exceeds the replayed one by more than ``ε_j`` before it is smaller by
      more than ``ε_j`` (``ε_j`` = :data:`LEX_TOL_FACTOR` times the allocator's band in
      level units, ``w_i (1e-6 + 1e-6 / d_i)``, of the two nodes at position ``j``).

    A feasible point whose sorted levels are not lexicographically worse than the optimum
    is the leximin point (it is unique), so in exact arithmetic this accepts only the
    correct allocation; moving load between nodes of a tier either leaves ``X(t)`` or
    raises a level above the optimum's.
    """

    feasible: bool
    level_excess: float  #: largest ``L_stored[j] - L_cold[j]`` before the walk stopped
    level_tol: float  #: ``ε_j`` at that position
    position: int  #: position in the sorted vectors (0 = the worst-off node)
    node: int  #: stored node at that position
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.feasible and self.level_excess <= self.level_tol

    def describe(self) -> str:
        """One clause for a check's detail."""
        if not self.feasible:
            return self.message
        verdict = "certified leximin" if self.passed else "not leximin"
        return (
            f"{verdict}: sorted weighted shortfall u·w at position {self.position} (node "
            f"{self.node}) {self.level_excess:.3g} above the replay's, tolerance "
            f"{self.level_tol:.3g}"
        )

    @property
    def excess(self) -> float:
        return self.level_excess

    @property
    def tol(self) -> float:
        return self.level_tol


@dataclass(frozen=True)
class QPCertificate:
    """Whether a stored QP tier allocation satisfies the rule's optimality conditions.

    The QP's answer is unique but can be extremely sensitive to the constraints that bind:
    where a generator and a load sit electrically almost on top of each other behind a
    saturated branch (PTDF differences of 2e-6 on IEEE-118), ``5e-5`` MW on that branch
    moves a later tier by 27 MW (seed 29, t = 4976) -- below every solver's feasibility
    tolerance, so two correct solves can differ by far more than the MW tolerance, and the
    cold re-solve itself may have to fix the earlier tiers within a band to be feasible.
    The certificate checks the claim without re-solving the QP: the tier problem (earlier
    tiers at their stored values, later tiers at 0) is convex, so the stored point is its
    optimum when the KKT conditions hold there. An LP finds multipliers, with the sign each
    constraint allows and nonzero only on constraints **active at the stored point** (a
    branch within ``1e-7 · rating + 1e-5`` MW of its limit, a bound within ``1e-7`` of its
    value relative to it: :data:`KKT_ACTIVE_REL`, :data:`KKT_ACTIVE_ABS`), that minimise the
    largest stationarity residual ``|∇f + Jᵀy + ν|`` over the generator and tier columns;
    it passes when that residual is at most ``1e-6 · max w`` (:data:`KKT_RESIDUAL_REL`).

    A stored allocation that gives the tier less than the rule would fails: some member could
    be served more without touching an active constraint, which no multiplier explains (the
    earlier allocator's band slide, IEEE-118 seed 29 t = 1539, left the binding branch
    1e-4 MW slack and is rejected). Active-set tolerances far below the run's feasibility
    tolerance keep numerical noise from being read as a binding constraint.
    """

    feasible: bool
    residual: float  #: smallest max-norm stationarity residual (weight units)
    tol_residual: float
    n_active: int  #: branch limits active at the stored point
    largest_multiplier: float  #: largest |y| on a branch limit in the certificate
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.feasible and self.residual <= self.tol_residual

    @property
    def excess(self) -> float:
        return self.residual

    @property
    def tol(self) -> float:
        return self.tol_residual

    def describe(self) -> str:
        """One clause for a check's detail."""
        if not self.feasible:
            return self.message
        verdict = "certified optimal" if self.passed else "NOT optimal"
        return (
            f"{verdict} by its KKT conditions: stationarity residual {self.residual:.3g} "
            f"(tolerance {self.tol_residual:.3g}) with {self.n_active} branch limits active "
            f"at the stored point (largest multiplier {self.largest_multiplier:.3g})"
        )


def replay_clearing(
    lp: ColdClearing,
    demand_mw: np.ndarray,
    available_mw: np.ndarray,
    stored_mw: np.ndarray,
    weights: np.ndarray,
    node_tier: np.ndarray,
    tier_order: list[int],
    rule: str,
    tier_energy: str,
    fix_bands: tuple[tuple[float, float], ...] = FIX_BANDS,
    qp_fallback_tiers: frozenset[int] = frozenset(),
    certify_above_mw: float | None = None,
    final_maxmin_tiers: frozenset[int] | None = None,
    stored_p_mw: np.ndarray | None = None,
) -> list[TierReplay]:
    """Replay the clearing of one interval tier by tier (see the module docstring).

    Parameters
    ----------
    lp : ColdClearing
        The network's cold model.
    demand_mw, stored_mw : (n_node,)
        Demand and the stored served load.
    available_mw : (n_gen,)
        Available capacity.
    weights : (n_node,)
        The weights of the interval's final clear (the ``nodes.weight`` column).
    node_tier : (n_node,) int
    tier_order : list of int
        The stored order (first = cleared first).
    rule : ``"maxmin"`` or ``"qp"``
    tier_energy : ``"free"`` or ``"max"``
    fix_bands : tuple of (rel, abs_mw)
        Bands ``rel · d + abs_mw`` around the stored allocation of earlier tiers, tried in
        order until the tier's solves are all optimal (:data:`FIX_BANDS`).
    qp_fallback_tiers : set of int
        Tiers whose QP the run recorded as replaced by the max-min LPs in some clear of the
        interval (status note ``qp[k]:...->maxmin``). The status does not say whether the
        final clear was one of them, so for these tiers the stored allocation may be either
        rule's: the QP is replayed, and the max-min rule too; the closer one is kept
        (``rule`` says which).
    certify_above_mw : float, optional
        For a tier replayed with the max-min rule whose allocation differs from the stored
        one by more than this, also compute a :class:`LeximinCertificate`.
    final_maxmin_tiers : set of int, optional
        The tiers whose final clear used the max-min LPs in place of the QP (status marks
        ``final-rule[k]=maxmin``, manifest version 2). When given, every tier is replayed
        with exactly its final rule and ``qp_fallback_tiers`` is ignored.
    stored_p_mw : (n_gen,), optional
        The stored generator outputs: a :class:`QPCertificate` is checked at the stored
        point ``(p, x)`` when given (and at a dispatch of its own otherwise).

    Returns
    -------
    list of TierReplay
        One per tier of ``tier_order``; stops after the first tier whose re-solve failed.
    """
    iv = _Replay.of(lp, demand_mw, available_mw, stored_mw, weights, tier_energy, stored_p_mw)
    tiers = np.asarray(node_tier, dtype=int)
    earlier = np.zeros(iv.d.size, dtype=bool)
    out: list[TierReplay] = []
    for k in tier_order:
        mem = tiers == k
        rules = _tier_rules(int(k), rule, qp_fallback_tiers, final_maxmin_tiers)
        rep = _replay_banded(iv, mem, int(k), earlier, rules, fix_bands, certify_above_mw)
        if not rep.ok and rep.rule == "qp" and rep.message.startswith("within-tier QP"):
            rep = _certify_unsolved(
                lp, iv.d, iv.avail, iv.xs, iv.w, mem, earlier, rep, tier_energy, stored_p_mw
            )
        out.append(rep)
        if not rep.ok:
            break
        earlier |= mem
    return out


@dataclass(frozen=True, eq=False)
class _Replay:
    """The inputs of one interval's replay (:func:`replay_clearing`), as float arrays."""

    lp: ColdClearing
    d: np.ndarray
    avail: np.ndarray
    xs: np.ndarray  #: the stored served load, clipped to ``[0, d]``
    w: np.ndarray
    tier_energy: str
    contain: tuple[np.ndarray, np.ndarray] | None
    stored_p_mw: np.ndarray | None

    @classmethod
    def of(
        cls,
        lp: ColdClearing,
        demand_mw: np.ndarray,
        available_mw: np.ndarray,
        stored_mw: np.ndarray,
        weights: np.ndarray,
        tier_energy: str,
        stored_p_mw: np.ndarray | None,
    ) -> _Replay:
        d = np.asarray(demand_mw, dtype=float)
        xs = np.clip(np.asarray(stored_mw, dtype=float), 0.0, d)
        # The stored point passed T3-feasibility within its tolerance: the cold rows are
        # widened just enough to hold it, so earlier tiers fixed exactly at their stored values
        # never make a tier infeasible by solver tolerances (and force a band whose effect a
        # congested tier amplifies: 27 MW from 1e-9 d on IEEE-118, seed 29, t = 4976).
        contain = (np.asarray(stored_p_mw, dtype=float), xs) if stored_p_mw is not None else None
        w = np.asarray(weights, dtype=float)
        avail = np.asarray(available_mw, dtype=float)
        return cls(lp, d, avail, xs, w, tier_energy, contain, stored_p_mw)


def _tier_rules(
    k: int, rule: str, qp_fallback_tiers: frozenset[int], final_maxmin_tiers: frozenset[int] | None
) -> list[str]:
    """The rules tier ``k`` is replayed with (see :func:`replay_clearing`)."""
    if final_maxmin_tiers is not None:
        return ["maxmin" if k in final_maxmin_tiers else rule]
    if rule == "qp" and k in qp_fallback_tiers:
        return [rule, "maxmin"]
    return [rule]


def _replay_banded(
    iv: _Replay,
    mem: np.ndarray,
    k: int,
    earlier: np.ndarray,
    rules: list[str],
    fix_bands: tuple[tuple[float, float], ...],
    certify_above_mw: float | None,
) -> TierReplay:
    """Tier ``k`` replayed with its ``rules``, earlier tiers held in the first band of
    ``fix_bands`` in which a replay solves (certified when its gap exceeds
    ``certify_above_mw``); the first failed replay when none does."""
    lp, d, avail, xs, w, tier_energy = iv.lp, iv.d, iv.avail, iv.xs, iv.w, iv.tier_energy
    rep: TierReplay | None = None
    for i, (rel, abs_mw) in enumerate(fix_bands):
        band = np.where(earlier, rel * d + abs_mw, 0.0)
        # Earlier tiers at their stored values (within the band), later tiers at 0.
        lo = np.where(earlier, np.maximum(xs - band, 0.0), 0.0)
        hi = np.where(earlier, np.minimum(xs + band, d), np.where(mem, d, 0.0))
        tries = [
            _replay_tier(lp, d, avail, xs, w, mem, k, lo, hi, r, tier_energy, iv.contain)
            for r in rules
        ]
        good = [r for r in tries if r.ok]
        rep = min(good, key=lambda r: r.gap_mw) if good else tries[0]
        if rep.ok:
            if len(rules) > 1:
                rep.notes.append(
                    f"run recorded qp[{k}]->maxmin; replayed {rep.rule} "
                    + ", ".join(f"{r.rule} gap {r.gap_mw:.3g} MW" for r in tries)
                )
            if i and earlier.any():
                rep.notes.append(f"earlier tiers within {rel:g}·d + {abs_mw:g} MW")
            if certify_above_mw is not None and rep.gap_mw > certify_above_mw:
                cert: LeximinCertificate | QPCertificate
                if rep.rule == "maxmin":
                    cert = leximin_certificate(
                        lp, d, avail, xs, w, mem, lo, hi, rep, tier_energy, fix_bands
                    )
                else:
                    cert = qp_certificate(
                        lp, d, avail, xs, w, mem, lo, hi, rep, tier_energy, iv.stored_p_mw
                    )
                rep = dataclasses.replace(rep, certificate=cert)
            break
        if not earlier.any():
            break  # no band to widen
    assert rep is not None
    return rep


def _certify_unsolved(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    xs: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    earlier: np.ndarray,
    failed: TierReplay,
    tier_energy: str,
    stored_p_mw: np.ndarray | None,
) -> TierReplay:
    """A QP tier HiGHS could not re-solve (its active-set solver cycles on some degenerate
    tiers: every generator at its limit, earlier tiers held exactly): the stored allocation
    passes only when its KKT conditions hold at the stored point (:class:`QPCertificate`)."""
    lo = np.where(earlier, xs, 0.0)
    hi = np.where(earlier, xs, np.where(mem, d, 0.0))
    cert = qp_certificate(lp, d, avail, xs, w, mem, lo, hi, failed, tier_energy, stored_p_mw)
    if not cert.passed:
        return dataclasses.replace(failed, certificate=cert)
    members = np.flatnonzero(mem)
    return TierReplay(
        tier=failed.tier,
        ok=True,
        cold_mw=np.where(mem, xs, np.nan),
        deliverable_mw=failed.deliverable_mw,
        gap_mw=0.0,
        node=int(members[0]) if members.size else -1,
        rule="qp",
        rounds=1,
        notes=[f"cold {failed.message}; the stored allocation is certified instead"],
        certificate=cert,
        certified_only=True,
    )


def _replay_tier(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    xs: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    k: int,
    lo: np.ndarray,
    hi: np.ndarray,
    rule: str,
    tier_energy: str,
    contain: tuple[np.ndarray, np.ndarray] | None = None,
) -> TierReplay:
    """Tier ``k``'s deliverable energy and within-tier rule, served loads in ``[lo, hi]``."""
    tol_mw = tier_slack_mw(d)
    notes: list[str] = []
    base = lp.solve(avail, lo, hi, cost_served=np.where(mem, -1.0, 0.0), contain=contain)
    if not base.ok:
        return _failed(k, d, f"deliverable energy: {base.message}", rule=rule)
    q = float(base.served_mw[mem].sum())
    x = np.full_like(d, np.nan)
    rounds = 0
    total = (mem.astype(float), q - tol_mw) if tier_energy == "max" else None
    if q >= d[mem].sum() - tol_mw:
        x[mem] = d[mem]
    elif rule == "qp":
        with np.errstate(divide="ignore", invalid="ignore"):
            qcoef = np.where(mem & (d > 0), w / d, 0.0)
        sol = lp.solve(
            avail,
            lo,
            hi,
            cost_served=np.where(mem, -w, 0.0),
            hessian_served=qcoef,
            tier_total=total,
            contain=contain,
        )
        if not sol.ok:
            return _failed(k, d, f"within-tier QP: {sol.message}", q, rule)
        if sol.message:
            notes.append(sol.message)
        x[mem] = np.clip(sol.served_mw, lo, hi)[mem]
        rounds = 1
    else:
        res = _leximin(
            lp, d, avail, w, mem, lo, hi, np.clip(base.served_mw, 0.0, d), total, contain
        )
        if isinstance(res, str):
            return _failed(k, d, res, q, rule)
        xr, rounds, more = res
        notes += more
        x[mem] = xr[mem]
    gap = np.where(mem, np.abs(x - xs), -1.0)
    j = int(np.argmax(gap)) if mem.any() else -1
    return TierReplay(
        tier=k,
        ok=True,
        cold_mw=x,
        deliverable_mw=q,
        gap_mw=float(gap[j]) if j >= 0 else 0.0,
        node=j,
        rule=rule,
        rounds=rounds,
        notes=notes,
    )


def leximin_certificate(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    xs: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    rep: TierReplay,
    tier_energy: str,
    fix_bands: tuple[tuple[float, float], ...] = FIX_BANDS,
) -> LeximinCertificate:
    """:class:`LeximinCertificate` of the stored allocation of the tier ``mem``.

    ``lo``, ``hi`` are the bounds the replay used (earlier tiers at their stored values,
    later tiers at 0); ``rep`` is the tier's replay (its ``cold_mw`` and ``deliverable_mw``).
    """
    total = _certificate_total(d, mem, rep, tier_energy)
    _sol, message = _stored_tier_in_x(lp, d, avail, xs, mem, lo, hi, total, fix_bands)
    feasible = _sol is not None
    pos = np.flatnonzero(mem & (d > 0))
    if pos.size == 0:
        return LeximinCertificate(feasible, 0.0, 0.0, -1, -1, message)

    def levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lev = np.clip(1.0 - x[pos] / d[pos], 0.0, 1.0) * w[pos]
        order = np.argsort(-lev, kind="stable")
        return lev[order], pos[order]

    ls, ns = levels(xs)
    lc, nc = levels(rep.cold_mw)
    eps_node = LEX_TOL_FACTOR * w * (RUN_BAND[0] + RUN_BAND[1] / np.where(d > 0, d, 1.0))
    j_worst, margin = 0, -math.inf  # margin: diff - eps, largest over the walk
    for j in range(pos.size):
        eps = float(max(eps_node[ns[j]], eps_node[nc[j]]))
        diff = float(ls[j] - lc[j])
        if diff - eps > margin:
            j_worst, margin = j, diff - eps
        if abs(diff) > eps:
            break  # worse beyond tolerance (fails), or better (lexicographically done)
    eps = float(max(eps_node[ns[j_worst]], eps_node[nc[j_worst]]))
    excess = max(float(ls[j_worst] - lc[j_worst]), 0.0)
    return LeximinCertificate(feasible, excess, eps, int(j_worst), int(ns[j_worst]), message)


def qp_certificate(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    xs: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    rep: TierReplay,
    tier_energy: str,
    stored_p_mw: np.ndarray | None = None,
    fix_bands: tuple[tuple[float, float], ...] = FIX_BANDS,
) -> QPCertificate:
    """:class:`QPCertificate` of the stored allocation of the tier ``mem`` (arguments as
    :func:`leximin_certificate`), at the stored generator outputs when given."""
    total = _certificate_total(d, mem, rep, tier_energy)
    x_all = np.where(mem, xs, np.clip(xs, lo, hi))
    if stored_p_mw is not None and np.array_equal(x_all, xs):
        # the tier is the last one served: the stored dispatch is a point of its problem
        return _kkt_certificate(lp, d, avail, x_all, stored_p_mw, w, mem, total)
    # The stored tier in X(t) with earlier tiers at their stored values: a dispatch p.
    sol, message = _stored_tier_in_x(lp, d, avail, xs, mem, lo, hi, total, fix_bands)
    if sol is None:
        return QPCertificate(False, math.inf, 0.0, 0, 0.0, message)
    return _kkt_certificate(lp, d, avail, x_all, sol.p_mw, w, mem, total)


def _certificate_total(
    d: np.ndarray, mem: np.ndarray, rep: TierReplay, tier_energy: str
) -> tuple[np.ndarray, float] | None:
    """The tier-total row a certificate holds the stored tier to (``tier_energy = max``: at
    least the replayed deliverable energy less the allocator's slack), else None."""
    if tier_energy != "max":
        return None
    return (mem.astype(float), rep.deliverable_mw - tier_slack_mw(d))


def _stored_tier_in_x(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    xs: np.ndarray,
    mem: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    total: tuple[np.ndarray, float] | None,
    fix_bands: tuple[tuple[float, float], ...],
) -> tuple[ColdSolve | None, str]:
    """A dispatch of the stored tier ``mem`` (within the first fixing band that is feasible)
    with the other loads in ``[lo, hi]``, and a note (the band, or why there is none)."""
    message = ""
    for rel, abs_mw in fix_bands:
        band = rel * d + abs_mw
        f_lo = np.where(mem, np.maximum(xs - band, 0.0), lo)
        f_hi = np.where(mem, np.minimum(xs + band, d), hi)
        sol = lp.solve(avail, f_lo, np.maximum(f_hi, f_lo), tier_total=total)
        if sol.ok:
            return sol, (f"within {rel:g}·d + {abs_mw:g} MW" if rel else "")
        message = f"the stored tier allocation is not in X(t): {sol.message}"
    return None, message


def _kkt_certificate(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    x: np.ndarray,
    p: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    total: tuple[np.ndarray, float] | None,
) -> QPCertificate:
    """The LP of :class:`QPCertificate` at the point ``(p, x)``."""
    ng = lp.n_gen
    tier_cols = np.flatnonzero(mem & (d > 0))
    cols = np.r_[np.arange(ng), ng + tier_cols]  # the problem's free columns
    z = np.r_[p, x]
    act = lp.a @ z
    n_bal = lp.flow_rows[0] if lp.flow_rows.size else lp.a.shape[0]
    outside = _outside_x(lp, d, avail, x, p, act, n_bal, total)
    if outside:
        return QPCertificate(False, math.inf, 0.0, 0, 0.0, outside)
    tol_row = KKT_ACTIVE_REL * np.r_[np.zeros(n_bal), lp.flow_rating_mw] + KKT_ACTIVE_ABS
    # multiplier sign per row: equality rows free; a branch row >= 0 at its upper limit,
    # <= 0 at its lower limit, 0 when inactive
    y_lo = np.where(act <= lp.row_lo + tol_row, -np.inf, 0.0)
    y_hi = np.where(act >= lp.row_hi - tol_row, np.inf, 0.0)
    y_lo[:n_bal], y_hi[:n_bal] = -np.inf, np.inf
    # bound multipliers of the free columns: >= 0 at the upper bound, <= 0 at the lower one
    lower = np.r_[lp.p_lower, np.zeros(tier_cols.size)]
    upper = np.r_[avail, d[tier_cols]]
    zc = z[cols]
    tol_b = KKT_ACTIVE_REL * np.maximum(np.abs(upper), 1.0) + KKT_ACTIVE_ABS
    nu_lo = np.where(zc <= lower + tol_b, -np.inf, 0.0)
    nu_hi = np.where(zc >= upper - tol_b, np.inf, 0.0)
    # gradient of f = Σ (w/d) x²/2 - w x over the tier columns (0 for generators)
    grad = np.r_[np.zeros(ng), w[tier_cols] / d[tier_cols] * x[tier_cols] - w[tier_cols]]
    extra: list[tuple[np.ndarray, float]] = []
    if total is not None:  # Σ_tier x >= Q - tol: a multiplier <= 0 when active
        row = np.r_[np.zeros(ng), np.ones(tier_cols.size)]
        active = float(x[tier_cols].sum()) <= total[1] + KKT_ACTIVE_ABS * max(total[1], 1.0)
        extra.append((row, -np.inf if active else 0.0))
    jac = lp.a.tocsc()[:, cols]  # rows: island balances, then branch limits
    res = _min_stationarity(jac, grad, (y_lo, y_hi), (nu_lo, nu_hi), extra)
    tol_res = KKT_RESIDUAL_REL * float(np.max(w[tier_cols], initial=1.0))
    n_active = int(np.sum((y_lo[n_bal:] < 0) | (y_hi[n_bal:] > 0)))
    if res.status != 0 or res.x is None:
        return QPCertificate(True, math.inf, tol_res, n_active, 0.0, str(res.message))
    y_flow = res.x[n_bal : jac.shape[0]]
    return QPCertificate(
        True, float(res.x[-1]), tol_res, n_active, float(np.max(np.abs(y_flow), initial=0.0))
    )


def _outside_x(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    x: np.ndarray,
    p: np.ndarray,
    act: np.ndarray,
    n_bal: int,
    total: tuple[np.ndarray, float] | None,
) -> str:
    """Why ``(p, x)`` is not in the tier problem's set within the run's feasibility
    tolerance (``""`` when it is)."""
    feas_row = KKT_FEAS_REL * np.r_[np.full(n_bal, float(d.sum())), lp.flow_rating_mw]
    feas_row += KKT_FEAS_ABS_MW
    off = float(np.max(np.r_[lp.row_lo - act, act - lp.row_hi] - np.r_[feas_row, feas_row]))
    out_of_box = max(
        float(np.max(lp.p_lower - p - KKT_FEAS_ABS_MW, initial=-1.0)),
        float(np.max(p - avail - KKT_FEAS_ABS_MW, initial=-1.0)),
    )
    short = -1.0
    if total is not None:
        short = total[1] - float(np.sum(x[total[0] > 0])) - KKT_FEAS_ABS_MW
    worst = max(off, out_of_box, short)
    if worst <= 0.0:
        return ""
    what = "its tier total is below the deliverable maximum" if short > 0 else "X(t)"
    return f"the stored point is not in {what} (by {worst:.3g} MW)"


def _min_stationarity(
    jac: sp.csc_matrix,
    grad: np.ndarray,
    y_bounds: tuple[np.ndarray, np.ndarray],
    nu_bounds: tuple[np.ndarray, np.ndarray],
    extra: list[tuple[np.ndarray, float]],
) -> Any:
    """``min r`` over multipliers ``(y, ν, e)`` in their sign bounds subject to
    ``-r <= grad + Jᵀy + ν + Σ e·row <= r`` (scipy's ``linprog`` result; ``x[-1] = r``)."""
    n_row, n_col = jac.shape
    n_extra = len(extra)
    blocks = [jac.T.tocsr(), sp.identity(n_col, format="csr")]
    if extra:
        blocks.append(sp.csr_matrix(np.column_stack([e[0] for e in extra])))
    core = sp.hstack(blocks, format="csr")
    ones = sp.csr_matrix(np.ones((n_col, 1)))
    a_ub = sp.vstack([sp.hstack([core, -ones]), sp.hstack([-core, -ones])], format="csr")
    b_ub = np.r_[-grad, grad]
    var_lo = np.r_[y_bounds[0], nu_bounds[0], [e[1] for e in extra], 0.0]
    var_hi = np.r_[y_bounds[1], nu_bounds[1], np.zeros(n_extra), np.inf]
    bounds = [
        (float(a) if math.isfinite(a) else None, float(b) if math.isfinite(b) else None)
        for a, b in zip(var_lo, var_hi)
    ]
    cost = np.zeros(n_row + n_col + n_extra + 1)
    cost[-1] = 1.0
    return linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")


def _leximin(
    lp: ColdClearing,
    d: np.ndarray,
    avail: np.ndarray,
    w: np.ndarray,
    mem: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    x0: np.ndarray,
    total: tuple[np.ndarray, float] | None,
    contain: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, int, list[str]] | str:
    """Weighted leximin of the tier by successive LPs (problem.py's loop); a message on failure.

    No cap on the rounds (each fixes at least one node, so at most ``|tier|`` rounds); the
    allocator caps them at 50 and records ``maxmin[k]:rounds-capped`` when it stops early.
    """
    with np.errstate(divide="ignore"):
        v = 1.0 / w
    tol_mw = tier_slack_mw(d)
    lvl_band = LEVEL_BAND_REL * d + LEVEL_BAND_ABS_MW
    r_lo, r_hi = lo.copy(), hi.copy()
    zero = mem & (d <= 0)
    r_lo[zero] = r_hi[zero] = 0.0
    free = mem & (d > 0)
    xr = x0
    rounds = 0
    notes: list[str] = []
    while free.any():
        coef = np.where(free, d * v, 1.0)
        rhs = np.where(free, d, 0.0)
        sol = lp.solve(
            avail, r_lo, r_hi, level=(free, coef, rhs), tier_total=total, contain=contain
        )
        if not sol.ok:
            return f"max-min round {rounds + 1}: {sol.message}"
        if sol.message and sol.message not in notes:
            notes.append(sol.message)
        rounds += 1
        xr = np.clip(sol.served_mw, 0.0, d)
        lam = sol.level
        # Bottlenecks: positive dual share on their level row (Σ μ_i coef_i = 1 at the
        # optimum); fallback: tight rows; last resort (or λ = 0): every free node.
        if sol.level_duals is not None:
            bott = free & (np.abs(sol.level_duals) * coef > BOTTLENECK_SHARE)
        else:
            bott = np.zeros_like(free)
        if not bott.any():
            bott = free & (xr + coef * lam - rhs <= tol_mw)
        if not bott.any() or lam <= 1e-12:
            bott = free.copy()
        r_lo[bott] = np.maximum(xr[bott] - lvl_band[bott], 0.0)
        free &= ~bott
        if lam <= 1e-12:
            break
    return xr, rounds, notes


def _failed(k: int, d: np.ndarray, message: str, q: float = math.nan, rule: str = "") -> TierReplay:
    return TierReplay(
        tier=int(k),
        ok=False,
        cold_mw=np.full_like(d, np.nan),
        deliverable_mw=q,
        gap_mw=math.inf,
        node=-1,
        rule=rule,
        message=message,
    )
