"""Event-triggered execution (MECHANISM.md section 4, Thm 4).

Role
----
With threshold ``theta > 0`` the clearing runs at ``t`` only when the trigger state
``z(t) = (d / d_base, available / p_max, s)`` moved by more than ``theta`` (sup norm) since the
last executed interval ``t_k``, or when the held allocation is infeasible. Holding means keeping
the served ratios ``x_i / d_i`` of ``t_k``; :class:`HoldChecker` builds the held point and checks
it against ``X(t)`` in NumPy (no solver).
"""

from __future__ import annotations

import numpy as np

from fpamm_opt.feasible import x_violations
from fpamm_opt.mechanism.types import Dispatch, SolveStatus
from fpamm_opt.network import NetworkData

__all__ = ["HoldChecker", "TriggerState", "served_ratio", "trigger_vector"]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.ones(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den > 0)
    return out


def served_ratio(served_mw: np.ndarray, demand_mw: np.ndarray) -> np.ndarray:
    """Served ratio ``r = x / d`` per node, ``1`` where ``d == 0``."""
    return _ratio(served_mw, demand_mw)


def trigger_vector(
    demand: np.ndarray,
    demand_base: np.ndarray,
    available: np.ndarray,
    pmax: np.ndarray,
    memory: np.ndarray,
    deficit_level: np.ndarray | None = None,
) -> np.ndarray:
    """Trigger state ``z = (d / d_base, available / p_max, s[, s_hat_delta])``.

    A zero denominator gives 1 (``0 / 0``: a unit with no capacity is "fully available"; a node
    with no base demand is at its base). ``deficit_level`` (the level in ``[0, 1]`` the
    deficit weights read, :func:`~fpamm_opt.mechanism.weights.deficit_level`) is appended when
    FP-AMM's weights read the deficit: the exact clearing moves with it, so the trigger must
    see it as it sees the memory.

    Returns
    -------
    (n_node + n_gen + n_node [+ n_node],) array
    """
    parts = [
        _ratio(demand, demand_base),
        _ratio(available, pmax),
        np.asarray(memory, dtype=float),
    ]
    if deficit_level is not None:
        parts.append(np.asarray(deficit_level, dtype=float))
    return np.concatenate(parts)


class TriggerState:
    """What the trigger remembers of the last executed interval ``t_k``.

    Parameters
    ----------
    theta : float
        Threshold ``>= 0`` on ``||z(t) - z(t_k)||_inf``.
    """

    def __init__(self, theta: float) -> None:
        self.theta = float(theta)
        self.t: int | None = None
        self.z: np.ndarray | None = None
        self.ratio: np.ndarray | None = None
        self.p_gen_mw: np.ndarray | None = None
        self.tier_order: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    @property
    def has_execution(self) -> bool:
        return self.z is not None

    def should_execute(self, z: np.ndarray) -> bool:
        """True when nothing was executed yet or ``||z - z(t_k)||_inf > theta``."""
        if self.z is None:
            return True
        return bool(np.max(np.abs(np.asarray(z, dtype=float) - self.z), initial=0.0) > self.theta)

    def record_execution(
        self,
        t: int,
        z: np.ndarray,
        ratio: np.ndarray,
        p_gen_mw: np.ndarray,
        tier_order: np.ndarray,
        weights: np.ndarray,
    ) -> None:
        """Remember interval ``t`` as the last executed one (mutates the state)."""
        self.t = int(t)
        self.z = np.array(z, dtype=float)
        self.ratio = np.array(ratio, dtype=float)
        self.p_gen_mw = np.array(p_gen_mw, dtype=float)
        self.tier_order = np.array(tier_order, dtype=int)
        self.weights = np.array(weights, dtype=float)


class HoldChecker:
    """Builds the held allocation of interval ``t`` and checks it against ``X(t)`` in NumPy.

    Parameters
    ----------
    net : NetworkData
        The network (its islands, generators, fixed withdrawals, ratings, angle limits).
    tol_mw : float
        Tolerance of every ``X(t)`` component (MW); angle-difference limits are checked as the
        flow bounds they imply (:meth:`NetworkData.flow_limits_mw`).
    """

    def __init__(self, net: NetworkData, tol_mw: float = 1e-6) -> None:
        self.net = net
        self.tol_mw = float(tol_mw)
        self._gen_island = net.bus_island[net.gen_bus]
        self._node_island = net.bus_island[net.node_bus]
        self._islands = np.unique(net.bus_island)

    def held_dispatch(
        self,
        ratio_k: np.ndarray,
        p_gen_k: np.ndarray,
        demand_t: np.ndarray,
        available_t: np.ndarray,
    ) -> Dispatch | None:
        """The held point of ``X(t)``, or None when it is infeasible (the clearing must run).

        Served load ``x = ratio_k * d(t)``. Generation keeps the shape of ``p_gen_k``, scaled per
        island to balance ``sum x + fixed withdrawal``; an island whose units produced nothing at
        ``t_k`` is scaled pro rata to ``available_t``. Checked against ``X(t)`` by
        :func:`~fpamm_opt.feasible.x_violations` (balance per island, generator and served-load
        bounds, flow limits from the ratings and angle-difference limits), within ``tol_mw``.

        Returns
        -------
        Dispatch or None
            Status OPTIMAL, ``n_solves = 0``, ``note = "held"``.
        """
        net, tol = self.net, self.tol_mw
        served = np.asarray(ratio_k, dtype=float) * np.asarray(demand_t, dtype=float)
        p_k = np.asarray(p_gen_k, dtype=float)
        avail = np.asarray(available_t, dtype=float)
        if not (np.all(np.isfinite(served)) and np.all(np.isfinite(p_k))):
            return None
        p = np.zeros(net.n_gen)
        for isl in self._islands:
            g = self._gen_island == isl
            need = float(served[self._node_island == isl].sum())
            need += float(net.bus_fixed_withdrawal_mw[net.bus_island == isl].sum())
            if abs(need) <= tol and not g.any():
                continue
            base = p_k[g]
            if base.sum() <= tol:
                base = avail[g]
            if base.sum() <= 0:
                if abs(need) <= tol:
                    continue
                return None
            p[g] = base * (need / base.sum())
        held = x_violations(net, p, served, avail, demand_t)
        if held.worst_mw()[0] > tol:
            return None
        flows = held.flows_mw[0]
        return Dispatch(
            status=SolveStatus.OPTIMAL,
            served_mw=served,
            p_gen_mw=p,
            flow_mw=flows,
            lmp=None,
            n_solves=0,
            solve_s=0.0,
            note="held",
        )
