"""The stateful mechanism: everything FP-AMM carries from one interval to the next.

Role
----
"Mechanism state lives outside the model": :class:`Mechanism` owns the memory ``s``, the
deficit ``D`` (:mod:`~fpamm_opt.mechanism.deficit`), the cumulative served and requested
energy, the priority stream and the trigger state; the
allocator (a solver model or the copper plate) only ever sees one interval. :meth:`Mechanism.step`
runs one interval and returns a frozen :class:`StepRecord` with everything the run loop writes.

One step
--------
1. Draw the tier order (Plackett-Luce) **every** interval, held or not, so that policies
   sharing a seed consume identical priority streams (common random numbers).
2. Event trigger (``theta > 0`` only): after a first execution, if
   ``||z(t) - z(t_k)||_inf <= theta`` and the held ratios of ``t_k`` are feasible in ``X(t)``,
   hold them; a held interval keeps ``t_k``'s tier order and weights. ``z`` carries the
   deficit level the weights read when FP-AMM's weights read the deficit.
3. Otherwise :func:`~fpamm_opt.mechanism.clearing.clear_interval`.
4. Audit (``theta > 0``, held, ``audit_every > 0``, every ``audit_every``-th held interval): the
   exact clearing ``r*`` with the held tier order and the current memory, **without** changing
   any state; ``tracking_error = ||r - r*||_inf``. Audit solves are counted in
   ``audit_n_solves``, not in ``n_solves``.
5. Memory update ``s <- sat((1 - beta) s + beta u)`` and deficit update
   ``D <- D + (r_l d - x) dt`` with the applied allocation, held or cleared (every policy
   records both), cumulative delivery ratio through ``t``, AMM price, generation cost.

Held intervals have no screen: ``scarce`` then means "the held allocation sheds more than
``scarcity_tol * sum d``", the AMM price uses the copper-plate estimate
``S = min(D, sum available)`` (``deliverable_estimated = True``), ``lmp`` is nan and
``status`` is ``held`` (the held point was verified in ``X(t)``; a failed audit adds an
``audit-failed`` event).

``status`` is an :class:`~fpamm_opt.mechanism.types.IntervalStatus` (a fixed vocabulary) and
``events`` says what happened in detail (:class:`~fpamm_opt.mechanism.types.ClearEvent`).

A step is atomic: if no usable allocation is found it raises
:class:`~fpamm_opt.errors.SolverError` and leaves every state (memory, deficit, cumulative
energy, trigger, counters) and the priority stream as it was, so the caller may retry the
interval: everything is computed first and committed at the end of the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpamm_opt.errors import InputError, SolverError
from fpamm_opt.mechanism.clearing import ClearingResult, clear_interval
from fpamm_opt.mechanism.config import MechanismConfig, Policy, WeightForm
from fpamm_opt.mechanism.deficit import DeficitState, update_deficit
from fpamm_opt.mechanism.memory import shortfall_ratio, update_memory
from fpamm_opt.mechanism.price import amm_price
from fpamm_opt.mechanism.priority import plackett_luce
from fpamm_opt.mechanism.trigger import HoldChecker, TriggerState, served_ratio, trigger_vector
from fpamm_opt.mechanism.types import (
    Allocator,
    ClearEvent,
    ClearEventKind,
    Dispatch,
    IntervalInput,
    IntervalStatus,
)
from fpamm_opt.mechanism.weights import deficit_level
from fpamm_opt.network import NetworkData

__all__ = ["Mechanism", "StepRecord"]

#: Output below this (MW) counts as "not committed" for the no-load cost ``c0``.
COMMIT_TOL_MW = 1e-9


@dataclass(frozen=True)
class StepRecord:
    """Everything the run loop stores about interval ``t``.

    Node arrays have shape ``(n_node,)``, generator arrays ``(n_gen,)``, branch arrays
    ``(n_branch,)``. ``delivery_ratio`` is cumulative **through** ``t``
    (``sum_{tau<=t} x / sum_{tau<=t} d``; 1 while nothing was requested). ``deficit_mwh`` is
    ``D(t+1)``, the deficit after the interval's update (MWh).
    """

    t: int
    scarce: bool
    executed: bool
    tier_order: np.ndarray
    demand_mw: np.ndarray
    served_mw: np.ndarray
    shortfall_ratio: np.ndarray
    memory_before: np.ndarray
    memory_after: np.ndarray
    deficit_mwh: np.ndarray
    weights: np.ndarray
    delivery_ratio: np.ndarray
    lmp: np.ndarray
    p_gen_mw: np.ndarray
    flow_mw: np.ndarray
    available_mw: np.ndarray
    amm_price: float
    deliverable_mw: float
    deliverable_estimated: bool
    residuals: np.ndarray
    q_hat: float
    q_bound: float
    q_bound_applies: bool
    gamma: float
    lambda_max: float
    n_solves: int
    solve_s: float
    status: IntervalStatus
    tracking_error: float
    served_ratio_exact: np.ndarray
    audit_n_solves: int
    cost: float
    #: Typed events of the interval's clears (:attr:`ClearingResult.events`); when held, only
    #: ``audit-failed`` if the audit found no usable allocation.
    events: tuple[ClearEvent, ...] = ()


@dataclass(frozen=True)
class _Applied:
    """What one interval applied, cleared or held, before the state update (private).

    The defaults are a held interval's: no fixed point, no solve of its own.
    """

    order: np.ndarray
    dispatch: Dispatch
    scarce: bool
    weights: np.ndarray
    deliverable_mw: float
    estimated: bool
    lmp: np.ndarray
    status: IntervalStatus
    exact_ratio: np.ndarray
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    q_hat: float = float("nan")
    q_bound: float = float("nan")
    applies: bool = False
    gamma: float = float("nan")
    lambda_max: float = float("nan")
    n_solves: int = 0
    solve_s: float = 0.0
    events: tuple[ClearEvent, ...] = ()
    tracking_error: float = float("nan")
    audit_n_solves: int = 0
    executed: bool = True


class Mechanism:
    """FP-AMM (or a baseline) as a stateful process over intervals.

    Parameters
    ----------
    allocator : Allocator
        Chooses points of ``X(t)``; built with the same ``node_tier``.
    net : NetworkData
        The network (base demand and ``p_max`` for the trigger, costs, hold checks).
    node_tier : (n_node,) int array
        Tier of each node, ``0..K-1``.
    tier_priority : (K,) array
        Plackett-Luce priorities ``pi > 0``.
    policy : Policy
        FPAMM, EQUAL or LMP.
    cfg : MechanismConfig
        Mechanism parameters.
    rng_priority : numpy.random.Generator
        The priority stream (advanced by ``K`` draws per interval).
    initial_memory : (n_node,) array, optional
        ``s(0)`` in ``[0, 1]``; zeros by default.
    interval_h : float
        Interval length ``dt`` (h) of the deficit recursion (the scenario's
        ``interval_minutes / 60``; 0.5 by default).
    """

    def __init__(
        self,
        allocator: Allocator,
        net: NetworkData,
        node_tier: np.ndarray,
        tier_priority: np.ndarray,
        policy: Policy | str,
        cfg: MechanismConfig,
        rng_priority: np.random.Generator,
        initial_memory: np.ndarray | None = None,
        interval_h: float = 0.5,
    ) -> None:
        self.allocator = allocator
        self.net = net
        self.policy = Policy(policy)
        self.cfg = cfg
        self.node_tier = np.array(node_tier, dtype=int)
        self.tier_priority = np.array(tier_priority, dtype=float)
        self.n_tier = int(self.tier_priority.size)
        n = net.n_node
        if self.node_tier.shape != (n,):
            raise InputError(f"node_tier has shape {self.node_tier.shape}, expected ({n},)")
        if n and (self.node_tier.min() < 0 or self.node_tier.max() >= self.n_tier):
            raise InputError(f"node_tier must lie in 0..{self.n_tier - 1} (K = len(tier_priority))")
        if not np.all(np.isfinite(self.tier_priority)) or np.any(self.tier_priority <= 0):
            raise InputError(
                f"tier priorities must be finite and > 0, got {self.tier_priority.tolist()}"
            )
        sizes = (allocator.n_node, allocator.n_gen, allocator.n_branch, allocator.n_tier)
        if sizes != (n, net.n_gen, net.n_branch, self.n_tier):
            raise InputError(
                f"allocator sizes (node, gen, branch, tier) = {sizes} do not match the "
                f"network and tiers {(n, net.n_gen, net.n_branch, self.n_tier)}"
            )
        if initial_memory is None:
            s0 = np.zeros(n)
        else:
            s0 = np.array(initial_memory, dtype=float)
            if s0.shape != (n,) or not np.all((s0 >= 0) & (s0 <= 1)):
                raise InputError(f"initial_memory must be ({n},) with values in [0, 1]")
        self._rng = rng_priority
        self._s = s0
        self._deficit = DeficitState.zero(n, interval_h)
        self._cum_served = np.zeros(n)
        self._cum_demand = np.zeros(n)
        self._trigger = TriggerState(cfg.trigger_theta)
        self._hold = HoldChecker(net)
        self.n_executed = 0
        self.n_held = 0

    # ------------------------------------------------------------------ state
    @property
    def memory(self) -> np.ndarray:
        """Current memory ``s`` (a copy)."""
        return self._s.copy()

    @property
    def deficit(self) -> np.ndarray:
        """Current deficit ``D`` (MWh, a copy)."""
        return self._deficit.deficit_mwh.copy()

    @property
    def interval_h(self) -> float:
        """Interval length ``dt`` (h) of the deficit recursion."""
        return self._deficit.interval_h

    @property
    def z_last(self) -> np.ndarray | None:
        """Trigger state ``z(t_k)`` of the last executed interval (a copy), None before any."""
        z = self._trigger.z
        return None if z is None else z.copy()

    # ------------------------------------------------------------------ step
    def step(self, inp: IntervalInput) -> StepRecord:
        """Run interval ``inp.t`` and advance the state (see the module docstring).

        Raises
        ------
        SolverError
            No usable allocation (state and priority stream left unchanged).
        InputError
            Bad shapes or values in ``inp``.
        """
        rng_state = self._rng.bit_generator.state
        try:
            return self._step(inp)
        except Exception:
            self._rng.bit_generator.state = rng_state
            raise

    def _step(self, inp: IntervalInput) -> StepRecord:
        d, a = self._check_shapes(inp)
        drawn = plackett_luce(self._rng, self.tier_priority)
        z = self._trigger_vector(d, a)
        held = None
        trig = self._trigger
        if self.cfg.trigger_theta > 0 and trig.has_execution and not trig.should_execute(z):
            assert trig.ratio is not None and trig.p_gen_mw is not None
            held = self._hold.held_dispatch(trig.ratio, trig.p_gen_mw, d, a)
        if held is None:
            applied = self._cleared(inp, drawn)
        else:
            applied = self._held(inp, held, d, a)
        record = self._record(inp, applied, d, a)
        self._commit(inp, applied, record, z)
        return record

    def _check_shapes(self, inp: IntervalInput) -> tuple[np.ndarray, np.ndarray]:
        """The interval's demand and available capacity as float arrays of the right shapes."""
        net = self.net
        d = np.asarray(inp.demand_mw, dtype=float)
        a = np.asarray(inp.available_mw, dtype=float)
        if d.shape != (net.n_node,) or a.shape != (net.n_gen,):
            raise InputError(
                f"interval {inp.t}: demand shape {d.shape} / available shape {a.shape}, "
                f"expected ({net.n_node},) / ({net.n_gen},)"
            )
        return d, a

    def _trigger_vector(self, d: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``z(t)``, with the deficit level FP-AMM's weights read when they read the deficit."""
        cfg = self.cfg
        level = None
        if (
            self.policy is Policy.FPAMM
            and cfg.weight_form is not WeightForm.EQUAL
            and cfg.weight_source.uses_deficit
        ):
            level = deficit_level(
                self._deficit, self.node_tier, self.n_tier, cfg.deficit_floor, cfg.weight_form
            )
        return trigger_vector(d, self.net.node_demand_mw, a, self.net.gen_pmax_mw, self._s, level)

    def _clear(self, inp: IntervalInput, order: np.ndarray) -> ClearingResult:
        """:func:`clear_interval` with the mechanism's state (which it does not change)."""
        return clear_interval(
            self.allocator,
            inp,
            self._s,
            self.node_tier,
            self.n_tier,
            order.tolist(),
            self.policy,
            self.cfg,
            self._deficit,
        )

    def _cleared(self, inp: IntervalInput, order: np.ndarray) -> _Applied:
        """Step 3: the interval cleared with the drawn tier order."""
        res = self._clear(inp, order)
        if not res.ok:
            raise SolverError(f"interval {inp.t}: no usable allocation ({res.status})")
        lmp = (
            np.asarray(res.screen.lmp, dtype=float)
            if res.screen.ok and res.screen.lmp is not None
            else np.full(self.net.n_node, np.nan)
        )
        return _Applied(
            order=order,
            dispatch=res.dispatch,
            scarce=res.scarce,
            weights=res.weights,
            deliverable_mw=res.deliverable_mw,
            estimated=res.deliverable_estimated,
            lmp=lmp,
            residuals=res.residuals,
            q_hat=res.q_hat,
            q_bound=res.q_bound,
            applies=res.q_bound_applies,
            gamma=res.gamma,
            lambda_max=res.lambda_max,
            n_solves=res.n_solves,
            solve_s=res.solve_s,
            status=IntervalStatus.of_clearing(res.ok, res.events),
            events=res.events,
            exact_ratio=np.full(self.net.n_node, np.nan),
        )

    def _held(self, inp: IntervalInput, held: Dispatch, d: np.ndarray, a: np.ndarray) -> _Applied:
        """Steps 2 and 4: the held allocation of the last execution, audited when it is due."""
        cfg, trig, nan = self.cfg, self._trigger, float("nan")
        assert trig.tier_order is not None and trig.weights is not None
        order = trig.tier_order.copy()
        total = float(d.sum())
        tracking_error, audit_n_solves = nan, 0
        events: tuple[ClearEvent, ...] = ()
        exact_ratio = np.full(self.net.n_node, nan)
        if cfg.audit_every > 0 and (self.n_held + 1) % cfg.audit_every == 0:
            exact = self._clear(inp, order)
            audit_n_solves = exact.n_solves
            if exact.ok:
                exact_ratio = served_ratio(exact.dispatch.served_mw, d)
                r_held = served_ratio(held.served_mw, d)
                tracking_error = float(np.max(np.abs(r_held - exact_ratio), initial=0.0))
            else:
                events = (ClearEvent(ClearEventKind.AUDIT_FAILED),)
        return _Applied(
            order=order,
            dispatch=held,
            scarce=(total - float(held.served_mw.sum())) > cfg.scarcity_tol * total,
            weights=trig.weights.copy(),
            deliverable_mw=min(total, float(a.sum())),
            estimated=True,
            lmp=np.full(self.net.n_node, nan),
            status=IntervalStatus.HELD,
            exact_ratio=exact_ratio,
            events=events,
            tracking_error=tracking_error,
            audit_n_solves=audit_n_solves,
            executed=False,
        )

    def _record(
        self, inp: IntervalInput, applied: _Applied, d: np.ndarray, a: np.ndarray
    ) -> StepRecord:
        """Step 5 computed, not committed: the record with the updated memory and deficit."""
        net, s, deficit = self.net, self._s, self._deficit
        dispatch = applied.dispatch
        served = np.asarray(dispatch.served_mw, dtype=float)
        p = np.asarray(dispatch.p_gen_mw, dtype=float)
        u = shortfall_ratio(served, d)
        total = float(d.sum())
        committed = p > COMMIT_TOL_MW
        cost = float(
            np.sum(net.gen_cost_c2 * p**2 + net.gen_cost_c1 * p)
            + np.sum(net.gen_cost_c0[committed])
        )
        d_after = update_deficit(
            deficit.deficit_mwh, served, d, self.node_tier, self.n_tier, deficit.interval_h
        )
        return StepRecord(
            t=int(inp.t),
            scarce=bool(applied.scarce),
            executed=applied.executed,
            tier_order=np.asarray(applied.order, dtype=int),
            demand_mw=d.copy(),
            served_mw=served.copy(),
            shortfall_ratio=u,
            memory_before=s.copy(),
            memory_after=update_memory(s, u, self.cfg.beta).copy(),
            deficit_mwh=d_after.copy(),
            weights=np.asarray(applied.weights, dtype=float).copy(),
            delivery_ratio=served_ratio(self._cum_served + served, self._cum_demand + d),
            lmp=applied.lmp,
            p_gen_mw=p.copy(),
            flow_mw=stored_flows_mw(net, p, served, dispatch.flow_mw),
            available_mw=a.copy(),
            amm_price=amm_price(applied.deliverable_mw, total, self.cfg.p_cap),
            deliverable_mw=float(applied.deliverable_mw),
            deliverable_estimated=bool(applied.estimated),
            residuals=np.asarray(applied.residuals, dtype=float),
            q_hat=float(applied.q_hat),
            q_bound=float(applied.q_bound),
            q_bound_applies=bool(applied.applies),
            gamma=float(applied.gamma),
            lambda_max=float(applied.lambda_max),
            n_solves=int(applied.n_solves),
            solve_s=float(applied.solve_s),
            status=applied.status,
            tracking_error=applied.tracking_error,
            served_ratio_exact=applied.exact_ratio,
            audit_n_solves=int(applied.audit_n_solves),
            cost=cost,
            events=applied.events,
        )

    def _commit(
        self, inp: IntervalInput, applied: _Applied, record: StepRecord, z: np.ndarray
    ) -> None:
        """Commit the step (nothing before this mutated the mechanism's state)."""
        d, dt = record.demand_mw, self._deficit.interval_h
        served = np.asarray(applied.dispatch.served_mw, dtype=float)
        self._s = record.memory_after.copy()  # the record keeps its own arrays
        self._deficit = DeficitState(
            record.deficit_mwh.copy(), self._deficit.demand_mwh + d * dt, dt
        )
        self._cum_served = self._cum_served + served
        self._cum_demand = self._cum_demand + d
        if applied.executed:
            self.n_executed += 1
            p = np.asarray(applied.dispatch.p_gen_mw, dtype=float)
            self._trigger.record_execution(
                inp.t, z, served_ratio(served, d), p, applied.order, applied.weights
            )
        else:
            self.n_held += 1


def stored_flows_mw(
    net: NetworkData, p_mw: np.ndarray, served_mw: np.ndarray, solver_flow_mw: np.ndarray
) -> np.ndarray:
    """The branch flows stored with an allocation: the DC flows of its injections.

    Recomputed from ``(p, x)`` with the network's sparse B-θ solve, not copied from the
    solver's ``pf`` variables: a B-θ LP answer may satisfy its flow-definition rows only to
    its feasibility tolerance, scaled by the branch susceptances (SimBench EHV, equal weights,
    t = 1228: the solver's ``pf`` was 4.1 MW off the flow of its own injections on a branch of
    small reactance while ``(p, x)`` lay in ``X(t)``). The solver's flows are kept when they
    are not one per branch (the copper plate) or the point is not finite.
    """
    solver = np.asarray(solver_flow_mw, dtype=float)
    p = np.asarray(p_mw, dtype=float)
    x = np.asarray(served_mw, dtype=float)
    if solver.shape != (net.n_branch,) or not (np.all(np.isfinite(p)) and np.all(np.isfinite(x))):
        return solver.copy()
    return np.asarray(net.flows_from_injections(net.bus_injection_mw(p, x)), dtype=float)
