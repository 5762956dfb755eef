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
from typing import Any

import numpy as np
import pyomo.environ as pyo

from fpamm_opt.blocks.allocation import build_allocation_block
from fpamm_opt.blocks.dcopf import (
    Formulation,
    add_ptdf_flow_rows,
    build_dcopf_block,
    secant_price,
)
from fpamm_opt.engine import Engine, EngineKind, LPSolution
from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import Rule, TierEnergy
from fpamm_opt.mechanism.tierqp import TierQP
from fpamm_opt.mechanism.types import (
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    SolveStatus,
    new_deferred_token,
    widened_note,
)
from fpamm_opt.network import NetworkData
from fpamm_opt.opf import DCOPFProblem, DCOPFResult, lmp_from_duals
from fpamm_opt.pipeline.accounting import PathStats
from fpamm_opt.pipeline.bounds import RULE_BAND, TIGHT_BAND
from fpamm_opt.pipeline.ledger import ClearLedger
from fpamm_opt.pipeline.rationing import TrialRationing
from fpamm_opt.pipeline.session import DeferredClear, IntervalSession
from fpamm_opt.pipeline.strategies import (
    DeliverableLP,
    FixedLoadSolves,
    KKTTier,
    MaxMinLPs,
    SolverQP,
    TierFailed,
    TierStrategy,
    WaterFillTrial,
    run_chain,
)
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
    flow_rows: bool = True,
) -> pyo.ConcreteModel:
    """Create the per-interval model: ``m.dcopf`` + ``m.alloc`` + extensions (built once).

    ``flow_rows=False`` builds a PTDF block without its branch rows, for the ``highs``
    engine's lazy rows (:func:`lazy_flow_rows`).
    """
    m = pyo.ConcreteModel(name=f"fpamm[{net.name}]")
    m.dcopf = pyo.Block()
    build_dcopf_block(m.dcopf, net, formulation, flow_rows=flow_rows)
    tiers = np.zeros(net.n_node, dtype=int) if node_tier is None else np.asarray(node_tier)
    m.alloc = pyo.Block()
    build_allocation_block(m.alloc, m.dcopf, net, tiers, n_tier)
    for ext in extensions:
        ext(m, net)
    return m


def lazy_flow_rows(
    formulation: Formulation | str,
    engine: EngineKind | str,
    solver: SolverSpec,
    extensions: Sequence[Extension],
) -> bool:
    """Whether the PTDF branch rows are carried lazily (:mod:`fpamm_opt.lazyflow`).

    Only on the ``highs`` engine (it adds rows to its ``highspy`` instances between runs; the
    Pyomo engine hands a fixed model to its solver, so it gets every row) and only for the
    plain blocks: an extension may read ``pf``, which is exact only on monitored branches.
    """
    if Formulation(formulation) is not Formulation.PTDF or extensions:
        return False
    kind = EngineKind(engine)
    highs = solver.name.lower() == "highs" and solver.instance is None
    return kind is EngineKind.HIGHS or (kind is EngineKind.AUTO and highs)


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
    dc = m.dcopf
    if kind is EngineKind.PYOMO and dc.formulation == "ptdf" and not hasattr(dc, "eq_pf_ptdf"):
        add_ptdf_flow_rows(dc, net)  # the lazy rows are the fast path's; Pyomo needs them all
    if kind is EngineKind.HIGHS:
        from fpamm_opt.fastpath import HighsEngine

        if solver.name.lower() != "highs":
            raise InputError(f"engine 'highs' needs solver 'highs', got {solver.name!r}")
        return HighsEngine(m, net, solver, formulation)
    return PyomoEngine(m, net, solver)


# ---------------------------------------------------------------- problem --
class AllocationProblem:
    """The :class:`~fpamm_opt.mechanism.types.Allocator` of the package, over one Pyomo model.

    :meth:`clear` is a loop over tiers, each cleared by the first strategy of :attr:`chain`
    that gives an answer (:mod:`fpamm_opt.pipeline`). Interval-scoped caches live in an
    :class:`~fpamm_opt.pipeline.session.IntervalSession` opened by :meth:`begin_interval`;
    path counts in :attr:`stats`.

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
    max_rounds : int
        Cap on max-min rounds per tier (each fixes >= 1 node); past it the remaining nodes
        keep the last solution and the dispatch notes "rounds-capped".
    tier_energy : TierEnergy
    water_fill : bool
        Try the exact water-fill shortcut per tier before the rule's solves (only where the
        balance involves the DC-OPF block's own variables, :func:`balance_is_own`).
    qp_method : QPMethod
    rationing : TrialRationing, optional
        How often weighted tiers get a water-fill trial (default: ``TRIAL_MIN_RATE``,
        ``TRIAL_PROBE``).
    lazy_rows : bool, optional
        PTDF on the ``highs`` engine: carry the branch rows lazily (default, ``None``:
        whenever :func:`lazy_flow_rows` allows); ``False`` compiles every row.
    """

    #: Below this success rate of weighted water-fill trials, only every TRIAL_PROBE-th
    #: weighted tier is tried (:class:`~fpamm_opt.pipeline.rationing.TrialRationing`).
    TRIAL_MIN_RATE = 0.2
    TRIAL_PROBE = 10
    #: Tight band and the rule's band (relative to demand, plus MW):
    #: :data:`fpamm_opt.pipeline.bounds.TIGHT_BAND`, :data:`~fpamm_opt.pipeline.bounds.RULE_BAND`.
    TIGHT_BAND_REL, TIGHT_BAND_ABS = TIGHT_BAND
    BAND_REL, BAND_ABS = RULE_BAND
    BAND = RULE_BAND
    #: Active-set corrections allowed from the previous interval's answer before the search
    #: restarts from the deliverable LP's point.
    KKT_CARRY_ITER = 4

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
        rationing: TrialRationing | None = None,
        lazy_rows: bool | None = None,
    ) -> None:
        self.net = net
        self.node_tier = np.asarray(node_tier, dtype=int)
        self.n_tier = int(n_tier)
        self.rule = Rule(rule)
        self.voll = float(voll)
        self.formulation = Formulation(formulation)
        self.solver_spec = as_solver_spec(solver)
        self.n_node, self.n_gen, self.n_branch = net.n_node, net.n_gen, net.n_branch
        lazy = lazy_flow_rows(self.formulation, engine, self.solver_spec, extensions)
        if lazy_rows is not None:
            lazy = lazy and bool(lazy_rows)
        self.model = build_model(
            net, self.formulation, self.node_tier, self.n_tier, extensions, flow_rows=not lazy
        )
        self.engine = make_engine(engine, self.model, net, self.solver_spec, self.formulation)
        self.engine_kind: EngineKind = self.engine.kind
        self.price = secant_price(net)
        # Minimum outputs relaxed to 0 (or kept when negative) so that X(t) is never empty.
        self._pg_lo = np.minimum(net.gen_pmin_mw, 0.0)
        self.max_rounds = max_rounds
        self.tier_energy = TierEnergy(tier_energy)
        self.water_fill = bool(water_fill) and balance_is_own(self.model)
        self.qp_method = QPMethod(qp_method)
        #: How tiers were cleared and QPs solved, over this allocator's lifetime.
        self.stats = PathStats()
        self.rationing = rationing or TrialRationing(self.TRIAL_MIN_RATE, self.TRIAL_PROBE)
        self.solves = FixedLoadSolves(self.engine, self.price, net.n_node, net.n_gen)
        #: The KKT search of the QP rule (None: the solver's QP answers every tier).
        self.kkt: KKTTier | None = None
        if self.rule is Rule.QP and self.qp_method is not QPMethod.SOLVER:
            if self.qp_method is QPMethod.KKT and extensions:
                raise InputError("qp_method 'kkt' needs the plain blocks (no extensions)")
            if not extensions:
                self.kkt = KKTTier(TierQP(net), self._pg_lo, self.stats, self.KKT_CARRY_ITER)
        #: The strategies tried in turn on every tier.
        self.chain: list[TierStrategy] = self._build_chain()
        self._session: IntervalSession | None = None

    def _build_chain(self) -> list[TierStrategy]:
        """Water-fill trial (if on), deliverable LP, the QP strategies (QP rule), max-min."""
        chain: list[TierStrategy] = []
        if self.water_fill:
            chain.append(WaterFillTrial(self.solves, self.stats, self.rationing))
        chain.append(DeliverableLP(self.solves, self.tier_energy))
        if self.rule is Rule.QP:
            if self.kkt is not None:
                chain.append(self.kkt)
            chain.append(SolverQP(self.solves, self.stats, self.kkt))
        chain.append(MaxMinLPs(self.solves, self.max_rounds))
        return chain

    @property
    def kkt_enabled(self) -> bool:
        """Whether the QP rule's tier problems go to :class:`TierQP` first."""
        return self.kkt is not None

    def begin_interval(self, inp: IntervalInput) -> IntervalSession:
        """Open interval ``inp``: a fresh :class:`IntervalSession` (the previous is dropped).

        Called by :func:`~fpamm_opt.mechanism.clearing.clear_interval`; :meth:`clear` opens
        one itself when it sees an ``IntervalInput`` object other than the session's.
        """
        self._session = IntervalSession(inp)
        return self._session

    def session_for(self, inp: IntervalInput) -> IntervalSession:
        """The session of ``inp`` (the very object), opened if needed."""
        if self._session is None or self._session.inp is not inp:
            return self.begin_interval(inp)
        return self._session

    # ---------------------------------------------------------------- helpers
    def _base(self, inp: IntervalInput) -> None:
        e = self.engine
        e.set_demand(inp.demand_mw)
        e.set_gen_bounds(self._pg_lo, np.asarray(inp.available_mw, dtype=float))
        self.solves.plain_rows()

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
        """Nodal prices ($/MWh) at each load node from the duals of ``sol`` (see
        :func:`lmp_from_duals`)."""
        return lmp_from_duals(self.net, self.formulation, sol)

    # ------------------------------------------------------------ Allocator
    def screen(self, inp: IntervalInput) -> Dispatch:
        """Least-cost DC-OPF with one value of lost load (the LMP baseline's clearing)."""
        e = self.engine
        self._base(inp)
        e.set_served_bounds(np.zeros(self.n_node), inp.demand_mw)
        e.set_objective(self.price, np.full(self.n_node, -self.voll), 0.0)
        sol = e.solve(duals=True)
        if sol.status is not SolveStatus.OPTIMAL:
            return self._failed(sol, 1, sol.solve_s, "screen")
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=sol.pl,
            p_gen_mw=sol.pg,
            flow_mw=sol.pf,
            objective=sol.objective,
            n_solves=1,
            solve_s=sol.solve_s,
            lmp=self.lmp_from_duals(sol),
            note=sol.message,
        )

    def clear(
        self,
        inp: IntervalInput,
        tier_order: Sequence[int],
        weights: np.ndarray,
        dispatch: bool = True,
    ) -> Dispatch:
        """Lexicographic tier clearing with the within-tier rule (see docs/design.md).

        Each tier in ``tier_order`` is cleared by the first strategy of :attr:`chain` with an
        answer, which fixes it exactly for the tiers after it. ``dispatch=False`` leaves out
        the final least-cost dispatch LP: the result is ``deferred`` (served loads only, with
        a ``deferred_token``) and :meth:`complete` solves that LP later; the fixed point of
        the clearing operator reads only served loads from its iterates.
        """
        session = self.session_for(inp)
        anchored_before = session.n_anchored
        ledger = ClearLedger(inp, weights, self.n_tier)
        self._base(inp)
        self.engine.set_weights(ledger.w)
        for pos, k in enumerate(tier_order):
            ctx = ledger.tier(k, pos, self.node_tier == k, session)
            try:
                ledger.record(ctx, run_chain(self.chain, ctx))
            except TierFailed as fail:
                return self._failed(fail.sol, ledger.log.n_solves, ledger.log.solve_s, fail.what)
        self.stats.anchored_tiers += session.n_anchored - anchored_before
        return self._finish(ledger, session, dispatch)

    def _finish(self, led: ClearLedger, session: IntervalSession, dispatch: bool) -> Dispatch:
        """The cleared allocation: with the accepted trial's LP as its dispatch, deferred, or
        with its least-cost dispatch (every load exact first, :meth:`FixedLoadSolves.dispatch`)."""
        b, log = led.bounds, led.log
        deferred = led.final is None and not dispatch
        token: int | None = None
        sol = led.final  # the last tier's accepted trial was this very LP
        if deferred:
            served = np.clip(b.x_fixed, b.lo, b.hi)
            token = new_deferred_token()
            kept = DeferredClear(b.lo.copy(), b.hi.copy(), led.last_mem.copy(), led.point)
            session.keep_deferred(token, kept)
        elif sol is None:
            sol, n, secs, how = self.solves.dispatch(b.lo, b.hi, b.d, led.last_mem, led.point)
            log.record("dispatch", sol, n, secs, how)
            if sol.status is not SolveStatus.OPTIMAL:
                return self._failed(sol, log.n_solves, log.solve_s, "dispatch")
        if log.widened:
            log.notes.append(widened_note(log.widened))
        nan = float("nan")
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=served if sol is None else np.clip(sol.pl, 0.0, b.d),
            p_gen_mw=np.full(self.n_gen, nan) if sol is None else sol.pg,
            flow_mw=np.full(self.n_branch, nan) if sol is None else sol.pf,
            objective=nan if sol is None else sol.objective,
            n_solves=log.n_solves,
            solve_s=log.solve_s,
            tier_level=led.levels,
            tier_deliverable_mw=led.deliver,
            rounds=led.rounds,
            cap_active=led.cap,
            note=";".join(log.notes),
            events=tuple(log.events),
            tier_paths=tuple(led.paths),
            deferred=deferred,
            path_switched=led.switched,
            deferred_token=token,
        )

    def complete(self, inp: IntervalInput, disp: Dispatch) -> Dispatch:
        """The least-cost dispatch of a deferred clear ``disp`` (one of the latest kept in
        this interval's session, found by its ``deferred_token``)."""
        if not disp.deferred:
            return disp
        session = self._session
        kept = None if session is None else session.deferred.get(disp.deferred_token or 0)
        if kept is None:
            raise ValueError("complete() takes one of the latest two deferred clears")
        d = np.asarray(inp.demand_mw, dtype=float)
        self._base(inp)
        sol, n, secs, how = self.solves.dispatch(kept.lo, kept.hi, d, kept.last_mem, kept.point)
        more = (ClearEvent(ClearEventKind.WIDENED, None, f"dispatch:{how}"),) if how else ()
        note = ";".join(n for n in (disp.note, *(e.note for e in more), sol.message) if n)
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
            events=disp.events + more,
            deferred=False,
            deferred_token=None,
        )

    # ------------------------------------------------------------- DC-OPF
    def solve_dcopf(
        self, demand_mw: np.ndarray | None = None, available_mw: np.ndarray | None = None
    ) -> DCOPFResult:
        """A plain least-cost DC-OPF (no shedding, the case's own costs and ``pmin``) on this
        problem's engine and model (:class:`~fpamm_opt.opf.DCOPFProblem` is the same problem
        on the DC-OPF block alone)."""
        net = self.net
        d = net.node_demand_mw if demand_mw is None else np.asarray(demand_mw, dtype=float)
        g = net.gen_pmax_mw if available_mw is None else np.asarray(available_mw, dtype=float)
        e = self.engine
        e.set_demand(d)
        e.set_gen_bounds(net.gen_pmin_mw, g)
        self.solves.plain_rows()
        e.set_served_bounds(d, d)
        e.set_objective(np.zeros(net.n_gen), np.zeros(net.n_node), 0.0, case_cost=True)
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
        Constraints added to the model before the solve (with engine ``pyomo`` the model
        holds the DC-OPF block ``model.dcopf`` alone, :class:`~fpamm_opt.opf.DCOPFProblem`).

    Returns
    -------
    DCOPFResult
        Status, cost ($/h, the case's own curves), dispatch, flows and LMPs.
    """
    t0 = time.perf_counter()
    if EngineKind(engine) is EngineKind.PYOMO:
        plain = DCOPFProblem(net, formulation, solver, extensions)
        build_s = time.perf_counter() - t0
        return dataclasses.replace(plain.solve(), build_s=build_s)
    # The fast path compiles the whole model (both blocks) into arrays.
    prob = AllocationProblem(
        net,
        np.zeros(net.n_node, dtype=int),
        1,
        formulation=formulation,
        solver=solver,
        engine=engine,
        extensions=extensions,
    )
    build_s = time.perf_counter() - t0
    res = prob.solve_dcopf()
    return dataclasses.replace(res, build_s=build_s, engine=prob.engine_kind.value)


def default_time_limit_s(net: NetworkData) -> float:
    """Per-solve time limit that suits the network: 10 s per 1000 buses, at least 10 s."""
    return max(10.0, 10.0 * net.n_bus / 1000.0)


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
    m = _elastic_model(net, d, g, lo, hi)
    spec = as_solver_spec(solver)
    try:
        res = make_solver(m, spec).solve()
    except Exception as exc:  # a solver that cannot run must not turn a reason into a crash
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return f"no reason found: the elastic LP could not be solved ({detail})"
    if res.status is not SolveStatus.OPTIMAL:
        return f"no reason found: the elastic LP ended {res.termination} {res.message}".strip()
    return _elastic_reason(net, m, lo, hi, top, tol_mw)


def _elastic_model(
    net: NetworkData, d: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> pyo.ConcreteModel:
    """The elastic LP of :func:`explain_infeasible`: all demand served (shed at a penalty),
    each branch's flow bounds ``[lo, hi]`` relaxed by violations costing 1 per MW."""
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
    return m


def _elastic_reason(
    net: NetworkData,
    m: pyo.ConcreteModel,
    lo: np.ndarray,
    hi: np.ndarray,
    top: int,
    tol_mw: float,
) -> str:
    """The reason :func:`explain_infeasible` reads from the solved elastic LP ``m``."""
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
