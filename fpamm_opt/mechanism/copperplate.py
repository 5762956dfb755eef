"""A "no network" allocator: FP-AMM on a copper plate (single bus, no branches).

Role
----
:class:`CopperPlateAllocator` implements the :class:`~fpamm_opt.mechanism.types.Allocator`
protocol in closed form, without a solver. It is the fast test double of the mechanism and a
documented allocator for users who want the mechanism without a network: the feasibility set is
``0 <= p_g <= available_g``, ``0 <= x_i <= d_i``, ``sum p = sum x`` (no flows; ``flow_mw`` has
length 0).

Screen (least cost, one VOLL)
    Serves ``S = min(D, sum available)`` by merit order (cheapest linear cost first). When short,
    the shedding is spread **pro rata** to demand, ``x_i = d_i S / D`` (on a copper plate every
    split is least-cost; pro rata is the documented tie-break). The price of every node is the
    marginal cost: ``voll`` when load is shed, otherwise the linear cost of the most expensive
    unit producing (of the cheapest unit with capacity when ``D = 0``).

Clear (lexicographic tiers, within-tier rule)
    For tier ``k`` in ``tier_order``: ``Q_k = min(D_k, remaining supply)``; then the tier's
    shortfall ``R_k = D_k - Q_k`` is water-filled: ``u_i = min(1, lam v_i)`` with ``v = 1 / w``
    and ``lam`` the smallest level with ``sum_i d_i min(1, lam v_i) = R_k``. On a copper plate
    the MAXMIN and QP rules give this same answer. Reported per tier: ``tier_level = lam``
    (0 for a fully served tier, ``1 / min v`` for a tier that gets nothing, as the max-min LP
    would), ``tier_deliverable_mw = Q_k``, ``rounds = 1``; ``cap_active`` is true when a node of
    a partially served tier is capped (``u_i = 1 < lam v_i``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from fpamm_opt.errors import InputError
from fpamm_opt.mechanism.config import Rule
from fpamm_opt.mechanism.types import Dispatch, IntervalInput, SolveStatus
from fpamm_opt.network import Convention, NetworkData, RatingInfo

__all__ = ["CopperPlateAllocator", "single_bus_network", "water_fill"]


def water_fill(d: np.ndarray, v: np.ndarray, shortfall_mw: float) -> tuple[np.ndarray, float]:
    """Capped water-filling ``u_i = min(1, lam v_i)`` with ``sum_i d_i u_i = shortfall_mw``.

    Parameters
    ----------
    d : (n,) array
        Demands, ``> 0``.
    v : (n,) array
        Inverse weights ``v = 1 / w``, ``> 0``.
    shortfall_mw : float
        Energy to shed, ``0 <= R <= sum d``.

    Returns
    -------
    u : (n,) array
        Shortfall ratios in ``[0, 1]``.
    lam : float
        The smallest level achieving the shortfall (``0`` if ``R <= 0``, ``1 / min v`` if
        ``R >= sum d``).
    """
    d = np.asarray(d, dtype=float)
    v = np.asarray(v, dtype=float)
    total = float(d.sum())
    if d.size == 0 or shortfall_mw <= 0.0:
        return np.zeros(d.size), 0.0
    if shortfall_mw >= total:
        return np.ones(d.size), float(1.0 / v.min())
    # Breakpoints b_i = 1/v_i: node i is capped once lam >= b_i. Try "the j nodes with the
    # smallest breakpoints are capped" for j = 0, 1, ... and take the first consistent j.
    order = np.argsort(1.0 / v, kind="stable")
    ds, vs = d[order], v[order]
    b = 1.0 / vs
    capped_mw = np.r_[0.0, np.cumsum(ds)[:-1]]
    slope = np.cumsum((ds * vs)[::-1])[::-1]
    lam_j = (shortfall_mw - capped_mw) / slope
    ok = lam_j <= b * (1.0 + 1e-12)
    j = int(np.argmax(ok)) if ok.any() else d.size - 1
    lam = float(lam_j[j])
    return np.minimum(1.0, lam * v), lam


def single_bus_network(
    node_demand_mw: np.ndarray,
    gen_pmax_mw: np.ndarray,
    gen_cost_c1: np.ndarray | None = None,
    name: str = "copperplate",
) -> NetworkData:
    """A :class:`NetworkData` with one bus, no branches, all nodes and generators on it.

    Pairs with :class:`CopperPlateAllocator` where a network object is required (the engine's
    cost, trigger and hold checks).
    """
    d = np.asarray(node_demand_mw, dtype=float)
    pmax = np.asarray(gen_pmax_mw, dtype=float)
    c1 = np.zeros(pmax.size) if gen_cost_c1 is None else np.asarray(gen_cost_c1, dtype=float)
    n_n, n_g = d.size, pmax.size
    empty_i = np.zeros(0, dtype=int)
    empty_f = np.zeros(0)
    return NetworkData(
        name=name,
        source="copperplate",
        base_mva=100.0,
        convention=Convention.MATPOWER,
        bus_ids=np.array([1]),
        bus_ref=np.array([True]),
        bus_island=np.array([0]),
        bus_fixed_withdrawal_mw=np.zeros(1),
        node_bus=np.zeros(n_n, dtype=int),
        node_demand_mw=d.copy(),
        gen_bus=np.zeros(n_g, dtype=int),
        gen_pmin_mw=np.zeros(n_g),
        gen_pmax_mw=pmax.copy(),
        gen_cost_c2=np.zeros(n_g),
        gen_cost_c1=c1.copy(),
        gen_cost_c0=np.zeros(n_g),
        gen_p_set_mw=np.zeros(n_g),
        branch_from=empty_i,
        branch_to=empty_i.copy(),
        branch_b_pu=empty_f,
        branch_shift_rad=empty_f.copy(),
        branch_rate_mw=empty_f.copy(),
        branch_angmin_rad=empty_f.copy(),
        branch_angmax_rad=empty_f.copy(),
        branch_ids=empty_i.copy(),
        ratings=RatingInfo("none"),
    )


class CopperPlateAllocator:
    """Closed-form allocator on a single bus (see the module docstring).

    Parameters
    ----------
    gen_pmax_mw : (n_gen,) array
        Generator capacities (MW).
    gen_cost_mw : (n_gen,) array
        Linear generation cost ($/MWh).
    node_tier : (n_node,) int array
        Tier of each node, ``0..n_tier-1``.
    n_tier : int
        Number of tiers.
    rule : Rule
        Recorded only: both rules give the same copper-plate answer.
    voll : float
        Value of lost load ($/MWh), the screen's price when short.
    """

    n_branch: int = 0

    def __init__(
        self,
        gen_pmax_mw: np.ndarray,
        gen_cost_mw: np.ndarray,
        node_tier: np.ndarray,
        n_tier: int,
        rule: Rule | str = Rule.MAXMIN,
        voll: float = 10000.0,
    ) -> None:
        self.gen_pmax_mw = np.asarray(gen_pmax_mw, dtype=float).copy()
        self.gen_cost_mw = np.asarray(gen_cost_mw, dtype=float).copy()
        self.node_tier = np.asarray(node_tier, dtype=int).copy()
        self.n_tier = int(n_tier)
        self.rule = Rule(rule)
        self.voll = float(voll)
        self.n_node = int(self.node_tier.size)
        self.n_gen = int(self.gen_pmax_mw.size)
        if self.gen_cost_mw.shape != self.gen_pmax_mw.shape:
            raise InputError(
                f"gen_cost_mw has shape {self.gen_cost_mw.shape}, expected {self.gen_pmax_mw.shape}"
            )
        if self.n_tier < 1 or (
            self.n_node and (self.node_tier.min() < 0 or self.node_tier.max() >= self.n_tier)
        ):
            raise InputError(f"node_tier must lie in 0..{self.n_tier - 1}")
        self._merit = np.argsort(self.gen_cost_mw, kind="stable")

    @classmethod
    def from_network(
        cls,
        net: NetworkData,
        node_tier: np.ndarray,
        n_tier: int,
        rule: Rule | str = Rule.MAXMIN,
        voll: float = 10000.0,
    ) -> CopperPlateAllocator:
        """Copper-plate allocator with ``net``'s generators (linear cost ``c1``; branches ignored)."""
        return cls(net.gen_pmax_mw, net.gen_cost_c1, node_tier, n_tier, rule, voll)

    # ------------------------------------------------------------------ helpers
    def _check(self, inp: IntervalInput) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(inp.demand_mw, dtype=float)
        a = np.asarray(inp.available_mw, dtype=float)
        if d.shape != (self.n_node,) or a.shape != (self.n_gen,):
            raise InputError(
                f"interval {inp.t}: demand shape {d.shape} / available shape {a.shape}, "
                f"expected ({self.n_node},) / ({self.n_gen},)"
            )
        if not (np.all(np.isfinite(d)) and np.all(d >= 0)):
            raise InputError(f"interval {inp.t}: demand must be finite and >= 0")
        if not (np.all(np.isfinite(a)) and np.all(a >= 0)):
            raise InputError(f"interval {inp.t}: available capacity must be finite and >= 0")
        return d, a

    def _merit_dispatch(self, total_mw: float, available: np.ndarray) -> np.ndarray:
        p = np.zeros(self.n_gen)
        cap = available[self._merit]
        before = np.r_[0.0, np.cumsum(cap)[:-1]]
        p[self._merit] = np.clip(total_mw - before, 0.0, cap)
        return p

    # ------------------------------------------------------------------ protocol
    def screen(self, inp: IntervalInput) -> Dispatch:
        """Least-cost dispatch with one VOLL; shedding pro rata (see the module docstring)."""
        t0 = time.perf_counter()
        d, a = self._check(inp)
        demand = float(d.sum())
        supply = min(demand, float(a.sum()))
        served = d * (supply / demand) if demand > 0 else np.zeros_like(d)
        p = self._merit_dispatch(supply, a)
        shed = demand - supply
        if shed > 0:
            price = self.voll
        else:
            producing = p > 0
            if producing.any():
                price = float(self.gen_cost_mw[producing].max())
            elif (a > 0).any():
                price = float(self.gen_cost_mw[a > 0].min())
            else:
                price = 0.0
        k = self.n_tier
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=served,
            p_gen_mw=p,
            flow_mw=np.zeros(0),
            lmp=np.full(self.n_node, price),
            objective=float(self.gen_cost_mw @ p + self.voll * shed),
            n_solves=1,
            solve_s=time.perf_counter() - t0,
            tier_level=np.full(k, np.nan),
            tier_deliverable_mw=np.full(k, np.nan),
            rounds=np.zeros(k, dtype=int),
        )

    def clear(self, inp: IntervalInput, tier_order: Sequence[int], weights: np.ndarray) -> Dispatch:
        """Lexicographic tiers, capped water-filling within a tier (see the module docstring)."""
        t0 = time.perf_counter()
        d, a = self._check(inp)
        w = np.asarray(weights, dtype=float)
        if w.shape != (self.n_node,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise InputError(f"interval {inp.t}: weights must be ({self.n_node},), finite, > 0")
        order = [int(k) for k in tier_order]
        if sorted(order) != list(range(self.n_tier)):
            raise InputError(
                f"tier_order must be a permutation of 0..{self.n_tier - 1}, got {order}"
            )
        v = 1.0 / w
        k_n = self.n_tier
        level = np.zeros(k_n)
        deliverable = np.zeros(k_n)
        served = np.zeros(self.n_node)
        cap_active = False
        remaining = float(a.sum())
        for k in order:
            idx = np.flatnonzero((self.node_tier == k) & (d > 0))
            d_k = float(d[idx].sum())
            q_k = min(d_k, remaining)
            if q_k <= 1e-12 * max(d_k, 1.0):
                q_k = 0.0
            remaining = max(remaining - q_k, 0.0)
            deliverable[k] = q_k
            if idx.size == 0:
                continue
            u, lam = water_fill(d[idx], v[idx], d_k - q_k)
            level[k] = lam
            served[idx] = d[idx] * (1.0 - u)
            if 0.0 < q_k < d_k:
                cap_active |= bool(np.any(lam * v[idx] > 1.0 + 1e-12))
        p = self._merit_dispatch(float(served.sum()), a)
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=served,
            p_gen_mw=p,
            flow_mw=np.zeros(0),
            lmp=None,
            objective=float(self.gen_cost_mw @ p),
            n_solves=1,
            solve_s=time.perf_counter() - t0,
            tier_level=level,
            tier_deliverable_mw=deliverable,
            rounds=np.ones(k_n, dtype=int),
            cap_active=cap_active,
        )
