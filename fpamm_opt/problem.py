"""Composes the blocks into the per-interval model, updates it, solves it, extracts results.

Phases (PyPSA's create -> solve -> assign): :func:`build_model` creates the Pyomo model once
(DC-OPF block ``m.dcopf``, allocation block ``m.alloc``, then the user's extensions);
an *engine* pushes new numbers into it and solves; :class:`AllocationProblem` turns the
mechanism's requests (screen an interval, clear it lexicographically with given weights)
into a short sequence of engine calls and returns :class:`~fpamm_opt.mechanism.types.Dispatch`.

Engines
-------
``pyomo``
    Mutable ``Param`` updates plus a persistent (HiGHS) or classic (any Pyomo solver) solve.
``highs``
    The fast path: the *same* Pyomo model compiled once into sparse arrays, then driven
    in place through ``highspy`` (bounds, costs and coefficients changed, hot-started).
    See :mod:`fpamm_opt.fastpath`; held to parity with ``pyomo`` by tests.

Extension seam
--------------
``extensions`` are callables ``f(model, net) -> None`` run after both blocks exist; they may
add variables, constraints or blocks anywhere on ``model`` (``model.dcopf.pg``,
``model.dcopf.pl``, ``model.dcopf.pf`` are the natural handles). The mechanism then runs on
top unchanged. Extension constraints must not depend on the mutable parameters the engine
changes between solves when the fast path is used; :func:`extension_is_static` checks it and
``engine="auto"`` falls back to the Pyomo engine when they do.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.blocks.allocation import build_allocation_block
from fpamm_opt.blocks.dcopf import Formulation, build_dcopf_block, secant_price
from fpamm_opt.engine import Engine, EngineKind, LPSolution
from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import Rule, TierEnergy
from fpamm_opt.mechanism.copperplate import water_fill
from fpamm_opt.mechanism.tierqp import ActiveSet, TierQP, TierQPResult
from fpamm_opt.mechanism.types import (
    Dispatch,
    IntervalInput,
    SolveStatus,
    keep_deferred,
    qp_fallback_note,
    rounds_capped_note,
    widened_note,
)
from fpamm_opt.network import NetworkData
from fpamm_opt.solvers import SolverLike, SolverSpec, as_solver_spec, make_solver

Extension = Callable[[pyo.ConcreteModel, NetworkData], None]


class QPMethod(enum.StrEnum):
    """How the within-tier QP (``Rule.QP``) is solved.

    ``auto`` = ``kkt`` for the plain blocks, ``solver`` when extensions are present.
    ``kkt``: :class:`~fpamm_opt.mechanism.tierqp.TierQP` (exact, certified by the KKT
    conditions), the solver's QP only when it gives no certified answer.
    ``solver``: always the solver's QP.
    """

    AUTO = "auto"
    KKT = "kkt"
    SOLVER = "solver"


def build_model(
    net: NetworkData,
    formulation: Formulation | str = Formulation.BTHETA,
    node_tier: np.ndarray | None = None,
    n_tier: int = 1,
    extensions: Sequence[Extension] = (),
) -> pyo.ConcreteModel:
    """Create the per-interval model: ``m.dcopf`` + ``m.alloc`` + extensions (built once)."""
    m = pyo.ConcreteModel(name=f"fpamm[{net.name}]")
    m.dcopf = pyo.Block()
    build_dcopf_block(m.dcopf, net, formulation)
    tiers = np.zeros(net.n_node, dtype=int) if node_tier is None else np.asarray(node_tier)
    m.alloc = pyo.Block()
    build_allocation_block(m.alloc, m.dcopf, net, tiers, n_tier)
    for ext in extensions:
        ext(m, net)
    return m


def extension_is_static(m: pyo.ConcreteModel) -> bool:
    """True when no constraint outside the two blocks involves a mutable parameter."""
    from pyomo.core.expr.visitor import identify_mutable_parameters

    own = {id(m.dcopf), id(m.alloc)}
    for con in m.component_data_objects(pyo.Constraint, active=True, descend_into=True):
        blk = con.parent_block()
        while blk is not None and id(blk) not in own:
            blk = blk.parent_block()
        # con.expr, not con.body: a mutable parameter in a bound (x >= 0.9 * pd) counts too.
        if blk is None and any(True for _ in identify_mutable_parameters(con.expr)):
            return False
    return True


def balance_is_own(m: pyo.ConcreteModel) -> bool:
    """True when the power balance involves only the DC-OPF block's own variables.

    The water-fill shortcut bounds a tier's energy by the generators' available capacity. An
    extension that only adds constraints (a ramp limit, a zonal import cap) keeps that bound
    valid; one that puts a new source into the balance (an import, storage) would not, and
    then :class:`AllocationProblem` always runs the rule's solves.
    """
    from pyomo.core.expr.visitor import identify_variables

    dc = m.dcopf
    own = {id(v) for comp in (dc.pg, dc.pl, dc.pf) for v in comp.values()}
    if hasattr(dc, "va"):
        own |= {id(v) for v in dc.va.values()}
    return all(
        id(v) in own
        for con in dc.eq_p_balance.values()
        for v in identify_variables(con.body, include_fixed=True)
    )


def _fix_tier(
    lo: np.ndarray,
    hi: np.ndarray,
    x: np.ndarray,
    d: np.ndarray,
    mem: np.ndarray,
    band: np.ndarray,
    exact: bool = False,
) -> None:
    """Fix tier ``mem`` at ``x`` in the served-load bounds: within ``band`` (a lower and upper
    bound, never an equality re-imposed from an LP solution), or exactly when ``exact``."""
    if exact:
        lo[mem] = hi[mem] = x[mem]
    else:
        lo[mem] = np.maximum(x[mem] - band[mem], 0.0)
        hi[mem] = np.minimum(x[mem] + band[mem], d[mem])


# ----------------------------------------------------------------- engine --
class PyomoEngine:
    """Drives the Pyomo model through mutable parameters and a :mod:`fpamm_opt.solvers` adapter."""

    kind = EngineKind.PYOMO

    def __init__(self, m: pyo.ConcreteModel, net: NetworkData, solver: SolverSpec) -> None:
        self.m = m
        self.net = net
        self.solver = make_solver(m, solver)
        dc, al = m.dcopf, m.alloc
        self._node = list(dc.node)
        self._gen = list(dc.gen)
        self._branch = list(dc.branch)
        self._balance = list(dc.eq_p_balance.values())
        self._level_cons = [al.ineq_level[i] for i in self._node]
        self._flow_cons = list(dc.eq_pf_ptdf.values()) if hasattr(dc, "eq_pf_ptdf") else []
        self._active_obj = al.obj_lp
        self.solver.set_objective(al.obj_lp)

    @staticmethod
    def _set(param: pyo.Param, values: np.ndarray, keys: list[int]) -> None:
        for k in keys:
            param[k].set_value(float(values[k]))

    def set_demand(self, d: np.ndarray) -> None:
        self._set(self.m.dcopf.pd, d, self._node)

    def set_served_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self._set(self.m.dcopf.pl_lo, lo, self._node)
        self._set(self.m.dcopf.pl_hi, hi, self._node)

    def set_gen_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self._set(self.m.dcopf.pg_min, lo, self._gen)
        self._set(self.m.dcopf.pg_max, hi, self._gen)

    def set_level(self, coef: np.ndarray, rhs: np.ndarray) -> None:
        self._set(self.m.alloc.level_coef, coef, self._node)
        self._set(self.m.alloc.level_rhs, rhs, self._node)

    def set_tier_total(self, member: np.ndarray, q: float) -> None:
        self._set(self.m.alloc.tier_member, member, self._node)
        self.m.alloc.tier_min_served.set_value(float(q))

    def set_objective(
        self,
        c_gen: np.ndarray,
        c_served: np.ndarray,
        c_level: float,
        q_served: np.ndarray | None = None,
        case_cost: bool = False,
    ) -> None:
        al = self.m.alloc
        self._set(al.c_gen, c_gen, self._gen)
        self._set(al.c_served, c_served, self._node)
        al.c_level.set_value(float(c_level))
        if case_cost:
            obj = al.obj_case
        elif q_served is not None:
            self._set(al.q_served, q_served, self._node)
            obj = al.obj_qp
        else:
            obj = al.obj_lp
        if obj is not self._active_obj:
            self._active_obj.deactivate()
            obj.activate()
            self.solver.set_objective(obj)
            self._active_obj = obj

    def set_weights(self, w: np.ndarray) -> None:
        self._set(self.m.alloc.weight, w, self._node)

    def solve(self, duals: bool = False, retry: bool = True) -> LPSolution:
        """Solve with the adapter (``retry`` is the fast path's; the adapters do not retry)."""
        res = self.solver.solve()
        dc = self.m.dcopf
        n = self.net
        if res.status is not SolveStatus.OPTIMAL:
            return LPSolution(
                res.status,
                res.termination,
                np.full(n.n_gen, np.nan),
                np.full(n.n_node, np.nan),
                np.full(n.n_branch, np.nan),
                np.nan,
                np.nan,
                res.solve_s,
                res.message,
            )
        pg = np.array([dc.pg[g].value for g in self._gen], dtype=float)
        pl = np.array([dc.pl[i].value for i in self._node], dtype=float)
        pf = np.array([dc.pf[k].value for k in self._branch], dtype=float)
        sol = LPSolution(
            res.status,
            res.termination,
            pg,
            pl,
            pf,
            float(self.m.alloc.level.value or 0.0),
            res.objective,
            res.solve_s,
        )
        if duals and self.solver.supports_duals:
            sol.balance_duals = np.array(self.solver.duals(self._balance))
            sol.level_duals = np.array(self.solver.duals(self._level_cons))
            if self._flow_cons:
                sol.flow_duals = np.array(self.solver.duals(self._flow_cons))
        return sol


def make_engine(
    kind: EngineKind | str,
    m: pyo.ConcreteModel,
    net: NetworkData,
    solver: SolverSpec,
    formulation: Formulation,
) -> Engine:
    """The engine for ``kind``; ``auto`` takes the fast path when it can.

    A solver object of the user's (``solver.instance``) always goes through Pyomo.
    """
    kind = EngineKind(kind)
    if kind is EngineKind.HIGHS and solver.instance is not None:
        raise InputError("engine 'highs' drives highspy itself; a solver object needs 'pyomo'")
    if kind is EngineKind.AUTO:
        fast_ok = (
            solver.name.lower() == "highs" and solver.instance is None and extension_is_static(m)
        )
        try:
            import fpamm_opt.fastpath  # noqa: F401
        except ImportError:
            fast_ok = False
        kind = EngineKind.HIGHS if fast_ok else EngineKind.PYOMO
    if kind is EngineKind.HIGHS:
        from fpamm_opt.fastpath import HighsEngine

        if solver.name.lower() != "highs":
            raise InputError(f"engine 'highs' needs solver 'highs', got {solver.name!r}")
        return HighsEngine(m, net, solver, formulation)
    return PyomoEngine(m, net, solver)


# ---------------------------------------------------------------- problem --
class AllocationProblem:
    """The :class:`~fpamm_opt.mechanism.types.Allocator` of the package, over one Pyomo model.

    Parameters
    ----------
    net : NetworkData
    node_tier : (n_node,) int
        Tier of each load node.
    n_tier : int
    rule : Rule
        Within-tier rule.
    voll : float
        Value of lost load ($/MWh) of the screening / LMP-baseline LP.
    formulation : Formulation
    solver : str, SolverSpec or Pyomo solver object, optional
        See :func:`fpamm_opt.solvers.as_solver_spec` (default: persistent HiGHS).
    engine : EngineKind
    extensions : sequence of callables ``f(model, net)``
    """

    def __init__(
        self,
        net: NetworkData,
        node_tier: np.ndarray,
        n_tier: int,
        rule: Rule | str = Rule.MAXMIN,
        voll: float = 10_000.0,
        formulation: Formulation | str = Formulation.BTHETA,
        solver: SolverLike | None = None,
        engine: EngineKind | str = EngineKind.AUTO,
        extensions: Sequence[Extension] = (),
        max_rounds: int = 50,
        tier_energy: TierEnergy | str = TierEnergy.FREE,
        water_fill: bool = True,
        qp_method: QPMethod | str = "auto",
    ) -> None:
        self.net = net
        self.node_tier = np.asarray(node_tier, dtype=int)
        self.n_tier = int(n_tier)
        self.rule = Rule(rule)
        self.voll = float(voll)
        self.formulation = Formulation(formulation)
        self.solver_spec = as_solver_spec(solver)
        self.n_node, self.n_gen, self.n_branch = net.n_node, net.n_gen, net.n_branch
        self.model = build_model(net, self.formulation, self.node_tier, self.n_tier, extensions)
        self.engine = make_engine(engine, self.model, net, self.solver_spec, self.formulation)
        self.engine_kind: EngineKind = self.engine.kind
        self.price = secant_price(net)
        self._zeros_node = np.zeros(net.n_node)
        self._ones_node = np.ones(net.n_node)
        self._zeros_gen = np.zeros(net.n_gen)
        # Minimum outputs relaxed to 0 (or kept when negative) so that X(t) is never empty.
        self._pg_lo = np.minimum(net.gen_pmin_mw, 0.0)
        #: Cap on max-min rounds per tier (each fixes >= 1 node); past it the remaining
        #: nodes keep the last solution and the dispatch notes "rounds-capped".
        self.max_rounds = max_rounds
        self.tier_energy = TierEnergy(tier_energy)
        #: Try the exact water-fill shortcut per tier before the rule's solves (see
        #: :meth:`clear`); False always runs the deliverable LP and the rule.
        self.water_fill = bool(water_fill) and balance_is_own(self.model)
        #: How tiers were cleared: ``"cp"`` water-fill at the copper-plate bound accepted,
        #: ``"rule"`` the trial was infeasible and the rule's solves ran, ``"skipped"`` no
        #: trial (it failed earlier in the interval, or trials rarely succeed lately).
        self.tier_paths: dict[str, int] = {"cp": 0, "rule": 0, "skipped": 0}
        # Trials found infeasible in the current interval, by (tier, position in the order):
        # the fixed point clears one interval several times with nearby weights, and a
        # congested tier stays congested; skipping the repeat trial saves one LP per clear.
        self._trial_key: tuple[int, float, float] | None = None
        self._trial_failed: set[tuple[int, int]] = set()
        # Across intervals: the success rate of trials on tiers that cannot be fully served
        # (an average over about the last ten). On a network whose scarcity always congests
        # they almost never succeed; below TRIAL_MIN_RATE only every TRIAL_PROBE-th such tier
        # is tried, so the rate can recover. Speed only: either path gives the rule's answer.
        self._trial_rate = 1.0
        self._trial_turns = 0
        #: How within-tier QPs were solved: ``"kkt_*"`` certified by :mod:`tierqp` from the
        #: same tier earlier in the interval (warm), the previous interval's answer (carry)
        #: or the deliverable LP's point (lp); ``"solver"`` the solver's QP (the method is
        #: off, or no search gave a certified answer). ``qp_misses`` counts failed searches.
        self.qp_method = QPMethod(qp_method)
        self._tierqp: TierQP | None = None
        if self.rule is Rule.QP and self.qp_method is not QPMethod.SOLVER:
            plain = not extensions
            if self.qp_method is QPMethod.KKT and not plain:
                raise InputError("qp_method 'kkt' needs the plain blocks (no extensions)")
            if plain:
                self._tierqp = TierQP(net)
        self.qp_paths: dict[str, int] = {"kkt_warm": 0, "kkt_carry": 0, "kkt_lp": 0, "solver": 0}
        self.kkt_iterations = 0
        #: Why the KKT search gave no certified answer, by reason (diagnostics).
        self.qp_misses: dict[str, int] = {}
        self._qp_guess: dict[tuple[int, int], ActiveSet] = {}
        self._qp_last: dict[int, ActiveSet] = {}  # the latest certified one per tier
        # KKT search failures in this interval by (tier, position); from two on, the solver's QP
        # Each QP tier's solve path in this interval by (tier, position): "kkt", "solver" or
        # "maxmin", chosen at its first clear; it only ever moves right (see :meth:`clear`).
        self._qp_path: dict[tuple[int, int], str] = {}
        # This interval's deliverable LPs by (tier, position), with the served-load bounds
        # they ran under: the first tier's is the same in every clear of the fixed point.
        self._deliverable: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, LPSolution]] = {}
        # Served-load bounds of the latest two deferred clears (see :meth:`complete`).
        self._deferred: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, LPSolution | None]] = {}

    @property
    def kkt_enabled(self) -> bool:
        """Whether the QP rule's tier problems go to :class:`TierQP` first."""
        return self._tierqp is not None

    # ---------------------------------------------------------------- helpers
    def _base(self, inp: IntervalInput) -> None:
        e = self.engine
        e.set_demand(inp.demand_mw)
        e.set_gen_bounds(self._pg_lo, np.asarray(inp.available_mw, dtype=float))
        e.set_level(self._ones_node, self._zeros_node)
        e.set_tier_total(self._ones_node, 0.0)

    def _dispatch(
        self, sol: LPSolution, status: SolveStatus, n_solves: int, solve_s: float, **kw
    ) -> Dispatch:
        return Dispatch(
            status=status,
            served_mw=sol.pl,
            p_gen_mw=sol.pg,
            flow_mw=sol.pf,
            objective=sol.objective,
            n_solves=n_solves,
            solve_s=solve_s,
            **kw,
        )

    def _failed(self, sol: LPSolution, n: int, s: float, note: str) -> Dispatch:
        return Dispatch(
            status=sol.status,
            served_mw=np.full(self.n_node, np.nan),
            p_gen_mw=np.full(self.n_gen, np.nan),
            flow_mw=np.full(self.n_branch, np.nan),
            n_solves=n,
            solve_s=s,
            note=f"{note}:{sol.termination}",
        )

    def lmp_from_duals(self, sol: LPSolution) -> np.ndarray | None:
        """Nodal prices ($/MWh) at each load node from the duals of ``sol``.

        B-θ: the dual of the bus balance. PTDF: ``λ_island - Σ_l H_lb μ_l`` (an extra MW
        withdrawn at ``b`` moves the island balance by one and each flow row by ``-H_lb``).
        """
        if sol.balance_duals is None:
            return None
        net = self.net
        if self.formulation is Formulation.BTHETA:
            bus_price = sol.balance_duals
        else:
            islands = np.unique(net.bus_island)
            isl = np.searchsorted(islands, net.bus_island)
            flow = sol.flow_duals if sol.flow_duals is not None else np.zeros(net.n_branch)
            bus_price = sol.balance_duals[isl] - net.ptdf.T @ flow
        return np.asarray(bus_price)[net.node_bus]

    #: Below this success rate of weighted water-fill trials, only every TRIAL_PROBE-th
    #: weighted tier is tried (see ``_trial_rate``).
    TRIAL_MIN_RATE = 0.2
    TRIAL_PROBE = 10
    #: Tight fixing band (relative to demand, plus MW), near HiGHS's own feasibility
    #: tolerance, where an answer must match an exact one: a water-fill trial's check LP (the
    #: rule's band 1e-6 d + 1e-6 would also accept a point that a line limit misses by up to
    #: that band, and the fixed point then alternated between it and the exact answer:
    #: residuals of ~1e-3 MW on IEEE-57, above the T2 floor), and the earlier tiers of the
    #: solver's QP fallback (as the KKT solver fixes them).
    TIGHT_BAND_REL = 1e-9
    TIGHT_BAND_ABS = 1e-9
    #: The rule's band (relative to demand, plus MW): max-min bottlenecks keep their level
    #: within it, and earlier tiers are widened to it when even the tight band is infeasible
    #: by solver tolerances. 1e-7 relative left some case118 LPs infeasible (primal
    #: infeasibility ~1e-5 MW); 1e-6 d + 1e-6 MW solves them.
    BAND_REL = 1e-6
    BAND_ABS = 1e-6
    BAND = (BAND_REL, BAND_ABS)
    #: Active-set corrections allowed from the previous interval's answer before the search
    #: restarts from the deliverable LP's point.
    KKT_CARRY_ITER = 4

    def _trial_due(self) -> bool:
        """Whether a tier that cannot be fully served gets a water-fill trial."""
        self._trial_turns += 1
        return self._trial_rate >= self.TRIAL_MIN_RATE or self._trial_turns % self.TRIAL_PROBE == 0

    @staticmethod
    def _tier_level(
        d: np.ndarray,
        x: np.ndarray,
        w: np.ndarray,
        v: np.ndarray,
        mem: np.ndarray,
        q: float,
        tol_mw: float,
    ) -> tuple[float, bool]:
        """Tier level ``max u_i w_i`` over uncapped nodes, and whether a cap ``u <= 1`` binds."""
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(d > 0, 1.0 - x / d, 0.0)
        uncapped = mem & (d > 0) & (u < 1.0 - 1e-9)
        capped = mem & (d > 0) & (u >= 1.0 - 1e-9)
        level = float(np.max(u[uncapped] * w[uncapped])) if uncapped.any() else 1.0
        cap = bool(q > tol_mw and capped.any() and np.any(level * v[capped] > 1.0 + 1e-9))
        return level, cap

    def _water_fill_trial(
        self,
        d: np.ndarray,
        v: np.ndarray,
        mem: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        q: float,
        band: np.ndarray,
    ) -> tuple[np.ndarray, LPSolution, np.ndarray, np.ndarray]:
        """Tier ``mem`` water-filled to serve ``q`` MW, then one LP: is it in ``X(t)``?

        Both rules have the copper-plate answer ``u_i = min(1, λ v_i)`` with
        ``Σ d_i u_i = Σ d_i - q`` over the set ``{0 <= x <= d, Σ_tier x <= q}``; when ``q`` is
        at least the tier's deliverable energy that set contains the tier's slice of ``X(t)``
        (earlier tiers fixed, later at zero), so a water-filled point that the LP finds
        feasible is the rule's unique answer over ``X(t)`` too. The LP (least-cost dispatch
        with the tier fixed within ``band``) includes every network and extension constraint.
        Returns the point, the LP and the served-load bounds that fix the tier at the point.
        """
        x = np.zeros(self.n_node)
        pos = mem & (d > 0)
        u, _ = water_fill(d[pos], v[pos], max(float(d[pos].sum()) - q, 0.0))
        x[pos] = d[pos] * (1.0 - u)
        lo_t, hi_t = lo.copy(), hi.copy()
        _fix_tier(lo_t, hi_t, x, d, mem, band, exact=q >= float(d[mem].sum()))
        sol = self._least_cost_lp(lo_t, hi_t, retry=False)
        if sol.status is not SolveStatus.OPTIMAL:
            self.engine.set_served_bounds(lo, hi)  # the rule's solves see the tier free again
        return x, sol, lo_t, hi_t

    def _least_cost_lp(self, lo: np.ndarray, hi: np.ndarray, retry: bool = True) -> LPSolution:
        """Least-cost dispatch with served loads in ``[lo, hi]`` (level rows, tier total off)."""
        e = self.engine
        e.set_level(self._ones_node, self._zeros_node)
        e.set_tier_total(self._ones_node, 0.0)
        e.set_served_bounds(lo, hi)
        e.set_objective(self.price, self._zeros_node, 0.0)
        return e.solve(retry=retry)

    def _solve_fixed(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        fixed: np.ndarray,
        d: np.ndarray,
        duals: bool = False,
        widen_first: np.ndarray | None = None,
        point: LPSolution | None = None,
    ) -> tuple[LPSolution, int, float, str]:
        """Solve with the loads of ``fixed`` nodes held at ``lo == hi`` (exactly).

        Earlier tiers are fixed **exactly** at the allocation the rule gave them, so that
        what is stored is what later tiers were cleared against. A band around them is not
        harmless: a least-cost LP slides every banded load to the bottom of its band, and on
        a congested network a later tier's answer can be very sensitive to an earlier tier's
        loads (IEEE-118, seed 29, t = 1539: 44 MW for a later node from 2.3e-3 MW of earlier
        tiers, a 1e-6 band). Only when the solver calls the exact fix infeasible by its
        tolerances are they widened, to :attr:`TIGHT_BAND_REL` and then to the rule's band
        ``1e-6 d + 1e-6`` MW (returned as ``"tight"`` / ``"band"``, else ``""``). With
        ``widen_first`` (the tier cleared last, for the final dispatch) only those nodes are
        widened first (``"last-tight"`` / ``"last-band"``): no later tier depends on them,
        so the earlier tiers stay exactly where the later ones were cleared against them.
        ``point`` (the final dispatch only): the last tier's own solve, a point of ``X(t)``
        whose earlier tiers are those the last tier was cleared against (exactly, or where
        that solve widened them, the values it chose within the band), returned as
        ``"rule-point"`` when the exact solve fails, before any widening: the last tier is
        optimal over a set that contains the stored earlier tiers, hence optimal with them
        fixed (what the audit re-solves).

        Returns the solution, the solves used, their time and the widening used.
        """
        e = self.engine
        n, secs = 0, 0.0
        steps = [("tight", self.TIGHT_BAND_REL, self.TIGHT_BAND_ABS), ("band", *self.BAND)]
        widths = [("", fixed, 0.0, 0.0)]
        if widen_first is not None and widen_first.any():
            widths += [(f"last-{name}", widen_first & fixed, r, a) for name, r, a in steps]
        widths += [(name, fixed, r, a) for name, r, a in steps]
        if not fixed.any():
            widths = widths[:1]
        for i, (label, which, rel, abs_mw) in enumerate(widths):  # noqa: B007 (label: last)
            b = np.where(which, rel * d + abs_mw, 0.0)
            e.set_served_bounds(np.maximum(lo - b, 0.0), np.minimum(hi + b, np.maximum(d, hi)))
            sol = e.solve(duals=duals, retry=i == len(widths) - 1)
            n += 1
            secs += sol.solve_s
            if sol.status is SolveStatus.OPTIMAL:
                break
            if i == 0 and point is not None:
                e.set_served_bounds(lo, hi)
                return point, n, secs, "rule-point"
        if label:
            e.set_served_bounds(lo, hi)
        return sol, n, secs, label

    def _dispatch_lp(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        d: np.ndarray,
        last: np.ndarray,
        point: LPSolution | None = None,
    ) -> tuple[LPSolution, int, float, str]:
        """Least-cost dispatch of the allocation in ``[lo, hi]``, every fixed load held
        exactly first, then only the last tier ``last`` widened (:meth:`_solve_fixed`): the
        stored allocation is the rule's, not the bottom of a band that a least-cost LP
        slides to (IEEE-118, seed 29, t = 4976: 3e-6 MW of an earlier tier's loads were
        worth 27 MW to the later tier). Where HiGHS cannot solve the exact fix, the last
        tier's own solve ``point`` (loads exactly the allocation, not least-cost) is kept
        before anything is widened."""
        e = self.engine
        e.set_level(self._ones_node, self._zeros_node)
        e.set_tier_total(self._ones_node, 0.0)
        e.set_objective(self.price, self._zeros_node, 0.0)
        if point is not None:
            point = dataclasses.replace(point, objective=float(self._cost_of(point.pg)))
        return self._solve_fixed(lo, hi, lo == hi, d, widen_first=last, point=point)

    @staticmethod
    def _point_of(res: TierQPResult) -> LPSolution:
        """A certified KKT answer as a point of ``X(t)`` (loads, outputs, flows)."""
        nan = float("nan")
        return LPSolution(
            SolveStatus.OPTIMAL, "kkt", res.p_gen_mw, res.served_mw, res.flow_mw, nan, nan, 0.0
        )

    def _cost_of(self, pg: np.ndarray) -> float:
        """The dispatch LP's objective (``price · p``) at the generator outputs ``pg``."""
        return float(np.dot(self.price, pg))

    def _kkt_tier(
        self,
        inp: IntervalInput,
        d: np.ndarray,
        w: np.ndarray,
        mem: np.ndarray,
        k: int,
        pos: int,
        x_fixed: np.ndarray,
        q_min: float | None,
        deliverable: LPSolution,
    ) -> tuple[TierQPResult | None, float]:
        """The tier's QP answer from :class:`TierQP` (None when not certified), and the time.

        Guesses tried in turn: the active set of the same tier earlier in this interval (warm:
        the fixed point clears it again with nearby weights), else the tier's latest certified
        one from an earlier interval (carry, a few corrections only); then the one read off the
        deliverable LP.
        """
        assert self._tierqp is not None
        t0 = time.perf_counter()
        g_hi = np.asarray(inp.available_mw, dtype=float)
        qp = self._tierqp

        def from_lp() -> ActiveSet:
            guess = qp.guess_from(
                deliverable.pf, deliverable.pg, self._pg_lo, g_hi, q_min is not None
            )
            # nodes: the copper-plate answer at the deliverable energy caps the same nodes
            on = mem & (d > 0)
            short = float(d[on].sum() - deliverable.pl[on].sum())
            u, _ = water_fill(d[on], 1.0 / w[on], short)
            guess.node_state = np.zeros(d.size, dtype=np.int8)
            guess.node_state[np.flatnonzero(on)[u >= 1.0]] = 1
            return guess

        tries: list[tuple[str, ActiveSet | None, int | None]] = []
        if (k, pos) in self._qp_guess:
            tries.append(("warm", self._qp_guess[(k, pos)], None))
        elif k in self._qp_last:
            tries.append(("carry", self._qp_last[k], self.KKT_CARRY_ITER))
        tries.append(("lp", None, None))
        for how, guess, limit in tries:
            res = qp.solve(d, w, mem, x_fixed, self._pg_lo, g_hi, q_min, guess or from_lp(), limit)
            self.kkt_iterations += res.iterations
            if res.ok:
                self.qp_paths[f"kkt_{how}"] += 1
                break
            reason = f"{how}:{res.reason.split(':')[0]}"
            self.qp_misses[reason] = self.qp_misses.get(reason, 0) + 1
        if res.active is not None:
            self._qp_guess[(k, pos)] = res.active
            if res.ok:
                self._qp_last[k] = res.active
        return (res if res.ok else None), time.perf_counter() - t0

    # ------------------------------------------------------------ Allocator
    def screen(self, inp: IntervalInput) -> Dispatch:
        """Least-cost DC-OPF with one value of lost load (the LMP baseline's clearing)."""
        e = self.engine
        self._base(inp)
        e.set_served_bounds(self._zeros_node, inp.demand_mw)
        e.set_objective(self.price, np.full(self.n_node, -self.voll), 0.0)
        sol = e.solve(duals=True)
        if sol.status is not SolveStatus.OPTIMAL:
            return self._failed(sol, 1, sol.solve_s, "screen")
        return self._dispatch(
            sol, SolveStatus.OPTIMAL, 1, sol.solve_s, lmp=self.lmp_from_duals(sol), note=sol.message
        )

    def clear(
        self,
        inp: IntervalInput,
        tier_order: Sequence[int],
        weights: np.ndarray,
        dispatch: bool = True,
    ) -> Dispatch:
        """Lexicographic tier clearing with the within-tier rule (see docs/design.md).

        ``dispatch=False`` leaves out the final least-cost dispatch LP: the result is
        ``deferred`` (served loads only) and :meth:`complete` solves that LP later. The fixed
        point of the clearing operator reads only served loads from its iterates.
        """
        e = self.engine
        d = np.asarray(inp.demand_mw, dtype=float)
        w = np.asarray(weights, dtype=float)
        v = 1.0 / w
        K = self.n_tier
        # Slack on the tier's fixed energy: well above LP feasibility tolerances (1e-7), far
        # below anything that matters (1e-6 of demand).
        notes: list[str] = []  # recoveries worth recording in the interval's status
        tol_mw = max(1e-6 * float(d.sum()), 1e-5)
        # MW: the max-min bottlenecks' band (see BAND_REL).
        band = self.BAND_REL * d + self.BAND_ABS
        tight = self.TIGHT_BAND_REL * d + self.TIGHT_BAND_ABS
        self._base(inp)
        e.set_weights(w)
        lo = np.zeros(self.n_node)
        hi = np.zeros(self.n_node)  # later tiers get nothing while earlier ones clear
        levels = np.full(K, np.nan)
        deliver = np.full(K, np.nan)
        rounds = np.zeros(K, dtype=int)
        cap = False
        n_solves, solve_s = 0, 0.0
        fixed_mw = 0.0  # energy given to the tiers cleared so far
        x_fixed = np.zeros(self.n_node)  # the allocations of the tiers cleared so far
        # Nodes of the tiers cleared so far: held exactly at ``x_fixed`` (lo == hi), widened
        # by ``_solve_fixed`` only when a solve calls that infeasible.
        fixed = np.zeros(self.n_node, dtype=bool)
        widened: list[str] = []
        switched = False  # a tier's QP path changed since an earlier clear of the interval
        avail_total = float(np.sum(np.asarray(inp.available_mw, dtype=float)))
        last: LPSolution | None = None  # the final dispatch LP, when a trial already was one
        key = (int(inp.t), float(d.sum()), avail_total)
        if key != self._trial_key:
            self._trial_key, self._trial_failed = key, set()
            self._qp_guess = {}
            self._qp_path = {}
            self._deliverable = {}
            self._deferred = {}
        last_mem = np.zeros(self.n_node, dtype=bool)  # the tier cleared last
        for pos, k in enumerate(tier_order):
            mem = self.node_tier == k
            last_mem = mem
            point: LPSolution | None = None  # a solve whose loads are exactly the allocation
            lo[mem], hi[mem] = 0.0, d[mem]
            last = None
            # Shortcut: the copper-plate bound on the tier's energy, water-filled, checked.
            d_tier = float(d[mem].sum())
            q_cp = min(d_tier, max(avail_total - fixed_mw, 0.0))
            weighted = q_cp < d_tier
            if self.water_fill and (
                (k, pos) in self._trial_failed or (weighted and not self._trial_due())
            ):
                self.tier_paths["skipped"] += 1
            elif self.water_fill:
                x, sol, lo_t, hi_t = self._water_fill_trial(d, v, mem, lo, hi, q_cp, tight)
                n_solves += 1
                solve_s += sol.solve_s
                ok = sol.status is SolveStatus.OPTIMAL
                if weighted:
                    self._trial_rate = 0.9 * self._trial_rate + 0.1 * ok
                if ok:
                    self.tier_paths["cp"] += 1
                    deliver[k] = q_cp
                    levels[k], capped_now = self._tier_level(d, x, w, v, mem, q_cp, tol_mw)
                    cap |= capped_now
                    rounds[k] = 0 if levels[k] == 0.0 else 1
                    lo[mem], hi[mem] = lo_t[mem], hi_t[mem]
                    fixed_mw += float(x[mem].sum())
                    x_fixed[mem] = x[mem]
                    fixed |= mem
                    last = sol
                    continue
                self.tier_paths["rule"] += 1
                self._trial_failed.add((k, pos))
            # (a) the tier's deliverable energy, earlier tiers fixed, later tiers at zero
            e.set_served_bounds(lo, hi)
            e.set_level(self._ones_node, self._zeros_node)
            e.set_tier_total(self._ones_node, 0.0)
            e.set_objective(self._zeros_gen, np.where(mem, -1.0, 0.0), 0.0)
            seen = self._deliverable.get((k, pos))
            if seen is not None and np.array_equal(seen[0], lo) and np.array_equal(seen[1], hi):
                sol = seen[2]  # the same LP earlier in this interval (first tier, usually)
            else:
                sol, n, secs, how = self._solve_fixed(lo, hi, fixed, d)
                if how:
                    widened.append(f"deliverable[{k}]:{how}")
                if sol.message:
                    notes.append(sol.message)
                n_solves += n
                solve_s += secs
                if sol.status is SolveStatus.OPTIMAL:
                    self._deliverable[(k, pos)] = (lo.copy(), hi.copy(), sol)
            if sol.status is not SolveStatus.OPTIMAL:
                return self._failed(sol, n_solves, solve_s, f"deliverable[{k}]")
            q = float(sol.pl[mem].sum())
            deliver[k] = q
            if q >= d_tier - tol_mw:
                _fix_tier(lo, hi, d, d, mem, band, exact=True)
                fixed_mw += d_tier
                x_fixed[mem] = d[mem]
                fixed |= mem
                levels[k] = 0.0
                continue
            if self.tier_energy is TierEnergy.MAX:
                e.set_tier_total(mem.astype(float), q - tol_mw)
            # (b) the within-tier rule
            use_lp = self.rule is Rule.MAXMIN
            if self.rule is Rule.QP:
                first = (k, pos) not in self._qp_path
                path = self._qp_path.get((k, pos), "kkt" if self._tierqp else "solver")
                q_min = q - tol_mw if self.tier_energy is TierEnergy.MAX else None
                x_qp: np.ndarray | None = None
                if path == "kkt":
                    res, secs = self._kkt_tier(inp, d, w, mem, k, pos, x_fixed, q_min, sol)
                    n_solves += 1
                    solve_s += secs
                    if res is not None:
                        x_qp, point = res.served_mw, self._point_of(res)
                if x_qp is None and path != "maxmin":
                    with np.errstate(divide="ignore", invalid="ignore"):
                        qcoef = np.where(mem & (d > 0), w / d, 0.0)
                    e.set_objective(self._zeros_gen, np.where(mem, -w, 0.0), 0.0, q_served=qcoef)
                    self.qp_paths["solver"] += 1
                    # Earlier tiers exactly at their allocation, as the KKT solver takes them.
                    sol, n, secs, how = self._solve_fixed(lo, hi, fixed, d)
                    n_solves += n
                    solve_s += secs
                    if how:
                        widened.append(f"qp[{k}]:{how}")
                    if sol.message:
                        notes.append(sol.message)
                    if sol.status is SolveStatus.OPTIMAL:
                        x_qp = np.clip(sol.pl, lo, hi)
                        point = sol
                        if self._tierqp is not None:  # a warm start for the KKT search
                            self._qp_guess[(k, pos)] = self._tierqp.guess_from(
                                sol.pf, sol.pg, self._pg_lo, inp.available_mw, q_min is not None
                            )
                        if first and path == "kkt":
                            # The first clear chooses the tier's path for the interval: the
                            # KKT search, warm from the solver's answer, or else the solver.
                            res, secs = self._kkt_tier(inp, d, w, mem, k, pos, x_fixed, q_min, sol)
                            n_solves += 1
                            solve_s += secs
                            path = "solver" if res is None else "kkt"
                            if res is not None:
                                x_qp, point = res.served_mw, self._point_of(res)
                        else:
                            path = "solver"
                    else:
                        # HiGHS's QP solver occasionally stops ("Iteration limit reached",
                        # "Solve error") on feasible problems: the LP rule replaces it for
                        # this tier for the rest of the interval. Recorded.
                        notes.append(qp_fallback_note(k, sol.termination))
                        path = "maxmin"
                # Paths only ever go kkt -> solver -> maxmin within an interval; a change
                # after the first clear restarts the fixed point (mechanism/clearing.py).
                switched |= not first and path != self._qp_path[(k, pos)]
                self._qp_path[(k, pos)] = path
                if x_qp is None:
                    use_lp = True
                else:
                    x = x_qp
                    rounds[k] = 1
            if use_lp:
                e.set_objective(self._zeros_gen, self._zeros_node, 1.0)
                free = mem & (d > 0)
                lo[mem & (d <= 0)] = hi[mem & (d <= 0)] = 0.0
                x = sol.pl.copy()
                while free.any() and rounds[k] < self.max_rounds:
                    # Rows of non-free nodes stay inactive as x_i + λ >= 0 (never a zero
                    # coefficient: solvers drop those and then warn when they change).
                    coef = np.where(free, d * v, 1.0)
                    rhs = np.where(free, d, 0.0)
                    e.set_level(coef, rhs)
                    sol, n, secs, how = self._solve_fixed(lo, hi, fixed, d, duals=True)
                    point = sol
                    if how:
                        widened.append(f"maxmin[{k}]:{how}")
                    if sol.message:
                        notes.append(sol.message)
                    n_solves += n
                    solve_s += secs
                    if sol.status is not SolveStatus.OPTIMAL:
                        return self._failed(sol, n_solves, solve_s, f"maxmin[{k}]")
                    rounds[k] += 1
                    x = np.clip(sol.pl, 0.0, d)
                    lam = sol.level
                    # Bottleneck nodes: positive dual on their level row (Σ μ_i coef_i = 1, so
                    # at least one exists); fallback: tight rows.
                    # Σ_i μ_i coef_i = 1 at the optimum, so μ_i coef_i is a normalised share;
                    # solver noise stays far below the threshold.
                    mu = sol.level_duals if sol.level_duals is not None else None
                    slack = x + coef * lam - rhs
                    share = np.abs(mu) * coef if mu is not None else None
                    if share is not None and np.any(free & (share > 1e-7)):
                        bott = free & (share > 1e-7)
                    else:
                        bott = free & (slack <= tol_mw)
                    if not bott.any() or lam <= 1e-12:
                        bott = free.copy()
                    # A bottleneck keeps (at least) its level: a lower bound with a tiny band,
                    # not x == value (re-imposing an LP solution exactly as an equality can
                    # make the next LP infeasible by solver tolerances).
                    lo[bott] = np.maximum(x[bott] - band[bott], 0.0)
                    free &= ~bott
                    if lam <= 1e-12:
                        break
                if free.any():
                    notes.append(rounds_capped_note(k))
                x = np.where(mem, np.clip(x, 0.0, d), x)
            levels[k], capped_now = self._tier_level(d, x, w, v, mem, q, tol_mw)
            cap |= capped_now
            # The tier's allocation is fixed lexicographically, exactly (see _solve_fixed).
            _fix_tier(lo, hi, x, d, mem, band, exact=True)
            fixed |= mem
            fixed_mw += float(x[mem].sum())
            x_fixed[mem] = x[mem]
        deferred = last is None and not dispatch
        if last is not None:
            # The last tier's accepted trial was this very LP (same bounds, cost objective).
            sol = last
        elif deferred:
            served = np.clip(x_fixed, lo, hi)
            self._deferred = keep_deferred(
                self._deferred, served, (lo.copy(), hi.copy(), last_mem.copy(), point)
            )
        else:
            # (c) least-cost dispatch of the allocation just fixed (exactly)
            sol, n, secs, how = self._dispatch_lp(lo, hi, d, last_mem, point)
            if how:
                widened.append(f"dispatch:{how}")
            if sol.message:
                notes.append(sol.message)
            n_solves += n
            solve_s += secs
            if sol.status is not SolveStatus.OPTIMAL:
                return self._failed(sol, n_solves, solve_s, "dispatch")
        if widened:
            notes.append(widened_note(widened))
        nan = float("nan")
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=served if deferred else np.clip(sol.pl, 0.0, d),
            p_gen_mw=np.full(self.n_gen, nan) if deferred else sol.pg,
            flow_mw=np.full(self.n_branch, nan) if deferred else sol.pf,
            objective=nan if deferred else sol.objective,
            n_solves=n_solves,
            solve_s=solve_s,
            tier_level=levels,
            tier_deliverable_mw=deliver,
            rounds=rounds,
            cap_active=cap,
            note=";".join(notes),
            deferred=deferred,
            path_switched=switched,
        )

    def complete(self, inp: IntervalInput, disp: Dispatch) -> Dispatch:
        """The least-cost dispatch of a deferred clear ``disp`` (one of the latest kept)."""
        if not disp.deferred:
            return disp
        bounds = self._deferred.get(id(disp.served_mw))
        if bounds is None:
            raise ValueError("complete() takes one of the latest two deferred clears")
        lo, hi, last_mem, point = bounds
        d = np.asarray(inp.demand_mw, dtype=float)
        self._base(inp)
        sol, n, secs, how = self._dispatch_lp(lo, hi, d, last_mem, point)
        extra = widened_note([f"dispatch:{how}"]) if how else ""
        note = ";".join(n for n in (disp.note, extra, sol.message) if n)
        if sol.status is not SolveStatus.OPTIMAL:
            return self._failed(sol, n, secs, "dispatch")
        return dataclasses.replace(
            disp,
            served_mw=np.clip(sol.pl, 0.0, d),
            p_gen_mw=sol.pg,
            flow_mw=sol.pf,
            objective=sol.objective,
            n_solves=n,
            solve_s=secs,
            note=note,
            deferred=False,
        )

    # ------------------------------------------------------------- DC-OPF
    def solve_dcopf(
        self, demand_mw: np.ndarray | None = None, available_mw: np.ndarray | None = None
    ) -> DCOPFResult:
        """A plain least-cost DC-OPF (no shedding, the case's own costs and ``pmin``)."""
        net = self.net
        d = net.node_demand_mw if demand_mw is None else np.asarray(demand_mw, dtype=float)
        g = net.gen_pmax_mw if available_mw is None else np.asarray(available_mw, dtype=float)
        e = self.engine
        e.set_demand(d)
        e.set_gen_bounds(net.gen_pmin_mw, g)
        e.set_level(self._ones_node, self._zeros_node)
        e.set_tier_total(self._ones_node, 0.0)
        e.set_served_bounds(d, d)
        e.set_objective(self._zeros_gen, self._zeros_node, 0.0, case_cost=True)
        t0 = time.perf_counter()
        sol = e.solve(duals=True)
        wall = time.perf_counter() - t0
        ok = sol.status is SolveStatus.OPTIMAL
        lmp = self.lmp_from_duals(sol) if ok else None
        return DCOPFResult(
            status=sol.status.value if not ok else "optimal",
            termination=sol.termination,
            objective=float(sol.objective) if ok else None,
            p_gen_mw=sol.pg,
            flow_mw=sol.pf,
            lmp=lmp,
            solve_s=wall,
            message=sol.message,
        )


@dataclass(frozen=True)
class DCOPFResult:
    """Result of :meth:`AllocationProblem.solve_dcopf`."""

    status: str
    termination: str
    objective: float | None
    p_gen_mw: np.ndarray
    flow_mw: np.ndarray
    lmp: np.ndarray | None
    solve_s: float
    message: str = ""


def solve_dcopf(
    net: NetworkData,
    formulation: Formulation | str = Formulation.BTHETA,
    solver: SolverLike | None = None,
    engine: EngineKind | str = EngineKind.PYOMO,
    extensions: Sequence[Extension] = (),
) -> DCOPFResult:
    """Build and solve one least-cost DC-OPF of ``net`` with its base demand.

    Parameters
    ----------
    net : NetworkData
        From :func:`fpamm_opt.network.load_network`.
    formulation : Formulation or str
        ``btheta`` or ``ptdf`` (the same feasible set).
    solver : str, SolverSpec or Pyomo solver object, optional
        A name (``highs``, ``appsi_highs``, ``glpk``, ...) or an object such as
        ``pyo.SolverFactory("appsi_highs")``; default persistent HiGHS.
    engine : EngineKind or str
        ``pyomo`` (default) or ``highs`` (the fast path; name ``highs`` only).
    extensions : sequence of callables ``f(model, net)``
        Constraints added to the model before the solve.

    Returns
    -------
    DCOPFResult
        Status, cost ($/h, the case's own curves), dispatch, flows and LMPs.
    """
    prob = AllocationProblem(
        net,
        np.zeros(net.n_node, dtype=int),
        1,
        formulation=formulation,
        solver=solver,
        engine=engine,
        extensions=extensions,
    )
    return prob.solve_dcopf()


#: Penalty ($ per MW) on load shed in the elastic LP of :func:`explain_infeasible`, against
#: 1 per MW of branch-limit violation: shedding is a last resort there.
ELASTIC_SHED_PENALTY = 1e3


def explain_infeasible(
    net: NetworkData,
    solver: SolverLike | None = None,
    demand_mw: np.ndarray | None = None,
    available_mw: np.ndarray | None = None,
    top: int = 3,
    tol_mw: float = 1e-4,
) -> str:
    """One line a user can act on, saying why the DC-OPF at full service is infeasible.

    First the island balance (:func:`fpamm_opt.network.adequacy_reason`: islands without
    generation, generation short of demand per island, lower limits above demand). If every
    island balances, an elastic LP serves all demand with each branch's flow bounds relaxed
    by violation variables costing 1 per MW (load shed costs :data:`ELASTIC_SHED_PENALTY`
    per MW) and names the ``top`` branches with the largest violations.

    Parameters
    ----------
    net : NetworkData
        The network.
    solver : str, SolverSpec or Pyomo solver object, optional
        For the elastic LP; default HiGHS.
    demand_mw, available_mw : arrays, optional
        Node demand and generator upper limits; default the base case.
    top : int
        How many branches to name.
    tol_mw : float
        Violations up to this size are ignored.

    Returns
    -------
    str
        The reason (never raises on a solver failure: the line says the LP failed).
    """
    from fpamm_opt.network import adequacy_reason

    d = net.node_demand_mw if demand_mw is None else np.asarray(demand_mw, dtype=float)
    g = net.gen_pmax_mw if available_mw is None else np.asarray(available_mw, dtype=float)
    why = adequacy_reason(net, d, g)
    if why is not None:
        return why
    lo, hi = net.flow_limits_mw()
    m = pyo.ConcreteModel()
    m.G = pyo.RangeSet(0, net.n_gen - 1)
    m.B = pyo.RangeSet(0, net.n_bus - 1)
    m.L = pyo.RangeSet(0, net.n_branch - 1)
    m.N = pyo.RangeSet(0, net.n_node - 1)
    m.pg = pyo.Var(m.G, bounds=lambda _, k: (float(net.gen_pmin_mw[k]), float(g[k])))
    m.va = pyo.Var(m.B, bounds=(-1e3, 1e3))
    m.up = pyo.Var(m.L, domain=pyo.NonNegativeReals)
    m.dn = pyo.Var(m.L, domain=pyo.NonNegativeReals)
    m.shed = pyo.Var(m.N, bounds=lambda _, k: (0.0, float(np.maximum(d[k], 0.0))))
    for b in np.flatnonzero(net.bus_ref):
        m.va[int(b)].fix(0.0)
    bb = net.base_mva * net.branch_b_pu
    sf = net.shift_flow_mw

    def flow(mm: pyo.ConcreteModel, k: int) -> Any:
        return bb[k] * (mm.va[int(net.branch_from[k])] - mm.va[int(net.branch_to[k])]) - sf[k]

    m.f_hi = pyo.Constraint(m.L, rule=lambda mm, k: flow(mm, k) <= float(hi[k]) + mm.up[k])
    m.f_lo = pyo.Constraint(m.L, rule=lambda mm, k: flow(mm, k) >= float(lo[k]) - mm.dn[k])
    gens_at: list[list[int]] = [[] for _ in range(net.n_bus)]
    for k, b in enumerate(net.gen_bus):
        gens_at[int(b)].append(k)
    nodes_at: list[list[int]] = [[] for _ in range(net.n_bus)]
    for k, b in enumerate(net.node_bus):
        nodes_at[int(b)].append(k)
    out_of: list[list[int]] = [[] for _ in range(net.n_bus)]
    into: list[list[int]] = [[] for _ in range(net.n_bus)]
    for k in range(net.n_branch):
        out_of[int(net.branch_from[k])].append(k)
        into[int(net.branch_to[k])].append(k)

    def balance(mm: pyo.ConcreteModel, b: int) -> Any:
        gen = sum(mm.pg[k] for k in gens_at[b])
        load = sum(float(d[k]) - mm.shed[k] for k in nodes_at[b])
        net_out = sum(flow(mm, k) for k in out_of[b]) - sum(flow(mm, k) for k in into[b])
        lhs = gen - load - net_out
        fixed = float(net.bus_fixed_withdrawal_mw[b])
        if isinstance(lhs, (int, float)):  # an isolated bus with nothing on it
            return pyo.Constraint.Feasible if abs(lhs - fixed) < 1e-9 else pyo.Constraint.Infeasible
        return lhs == fixed

    m.bal = pyo.Constraint(m.B, rule=balance)
    m.obj = pyo.Objective(
        expr=sum(m.up[k] + m.dn[k] for k in m.L)
        + ELASTIC_SHED_PENALTY * sum(m.shed[k] for k in m.N)
    )
    spec = as_solver_spec(solver)
    try:
        res = make_solver(m, spec).solve()
    except Exception as exc:  # a solver that cannot run must not turn a reason into a crash
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return f"no reason found: the elastic LP could not be solved ({detail})"
    if res.status is not SolveStatus.OPTIMAL:
        return f"no reason found: the elastic LP ended {res.termination} {res.message}".strip()
    viol = np.array([pyo.value(m.up[k]) + pyo.value(m.dn[k]) for k in m.L])
    shed = np.array([pyo.value(m.shed[k]) for k in m.N]) if net.n_node else np.zeros(0)
    parts: list[str] = []
    over = np.flatnonzero(viol > tol_mw)
    if over.size:
        order = over[np.argsort(-viol[over])][:top]
        names = []
        for k in order:
            f_b, t_b = net.bus_ids[net.branch_from[k]], net.bus_ids[net.branch_to[k]]
            limit = float(min(hi[k], -lo[k]))
            row = int(net.branch_ids[k])
            label = net.branch_labels[row - 1] if net.branch_labels else ""
            names.append(
                f"branch {row} ({label if label else f'{f_b}-{t_b}'}) needs "
                f"{viol[k]:.1f} MW "
                f"over its {limit:.1f} MW limit"
            )
        parts.append(
            f"branch limits: {over.size} branches cannot carry the flow at full service "
            f"({viol[over].sum():.1f} MW of violation in total); largest: " + "; ".join(names)
        )
    if shed.sum() > tol_mw:
        isl = net.bus_island[net.node_bus]
        by = {int(i): float(shed[isl == i].sum()) for i in np.unique(isl[shed > tol_mw])}
        parts.append(
            "load shed even with relaxed branches: "
            + ", ".join(f"island {i} {v:.1f} MW" for i, v in by.items())
        )
    if not parts:
        qp = (
            " on the QP of the case's quadratic costs (try a solver with a robust QP, or "
            "linear costs)"
            if net.has_quadratic_cost
            else " (numerical)"
        )
        return (
            "no network reason: an elastic LP serves all demand within every limit, so the "
            f"case is DC-feasible and the failure is the solver's{qp}"
        )
    return "; ".join(parts)
