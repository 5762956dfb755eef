"""The DC-OPF set ``X(t)`` in NumPy: its bounds and the violations of a point, by component.

Role
----
One definition of "is this point in ``X(t)``", shared by the three places that re-check a
point without a solver: the run loop (:func:`fpamm_opt.sim.run.dispatch_violation_mw`, every
stored allocation), the event trigger (:class:`fpamm_opt.mechanism.trigger.HoldChecker`, the
held point) and the verifier (:func:`fpamm_opt.verify.feasibility.check_dc_feasibility`, every
stored interval). :func:`x_violations` returns the violation of each constraint family in MW;
each caller compares them with its own tolerance.

``X(t)``, for generator outputs ``p`` and served loads ``x`` (MW)::

    Σ_{g in island} p_g - Σ_{i in island} x_i - Σ_{b in island} fixed_b = 0   per island
    min(pmin, 0) <= p <= available(t)
    0 <= x <= d(t)
    lo <= PTDF · (inj + shift_inj) - shift_flow <= hi   (rating and angle limits, MW)

Pyomo-free: NumPy only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from fpamm_opt.network import NetworkData

__all__ = [
    "DENSE_PTDF_MAX",
    "XComponent",
    "XViolations",
    "dc_flows_mw",
    "flow_limits",
    "gen_lower_mw",
    "positive_part",
    "x_violations",
]

#: Largest ``n_branch · n_bus`` for which flows are computed with the dense PTDF.
DENSE_PTDF_MAX = 20_000_000


class XComponent(enum.StrEnum):
    """The constraint families of ``X(t)`` that :func:`x_violations` measures."""

    BALANCE = "balance"
    GEN_BELOW_LOWER = "gen_below_lower"
    GEN_ABOVE_AVAILABLE = "gen_above_available"
    SERVED_BELOW_ZERO = "served_below_zero"
    SERVED_ABOVE_DEMAND = "served_above_demand"
    FLOW_ABOVE_RATING = "flow_above_rating"


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


def positive_part(v: np.ndarray) -> np.ndarray:
    """Positive part, NaN as +inf (a missing value is a violation)."""
    return np.where(np.isnan(v), np.inf, np.maximum(v, 0.0))


@dataclass(frozen=True, eq=False)
class XViolations:
    """Violations of ``X(t)`` (MW, ``>= 0``; ``+inf`` where a value is NaN), by component.

    Every array has one row per interval. Columns: islands (:attr:`islands`) for the balance,
    generators, nodes or branches for the others.
    """

    islands: np.ndarray  #: (n_island,) island ids, the columns of ``balance``
    injection_mw: np.ndarray  #: (T, n_bus) net injections the flows were computed from
    flows_mw: np.ndarray  #: (T, n_branch) recomputed DC flows
    balance: np.ndarray  #: (T, n_island) ``|Σ injections|`` per island
    gen_below_lower: np.ndarray  #: (T, n_gen) ``min(pmin, 0) - p``
    gen_above_available: np.ndarray  #: (T, n_gen) ``p - available``
    served_below_zero: np.ndarray  #: (T, n_node) ``-x``
    served_above_demand: np.ndarray  #: (T, n_node) ``x - d``
    flow_above_rating: np.ndarray  #: (T, n_branch) ``max(flow - hi, lo - flow)``

    def by_component(self) -> dict[XComponent, np.ndarray]:
        """The violation arrays keyed by component, in :class:`XComponent` order."""
        return {c: getattr(self, c.value) for c in XComponent}

    def worst_mw(self) -> np.ndarray:
        """Largest violation (MW) over all components, per interval: shape ``(T,)``."""
        per = [v.max(axis=1, initial=0.0) for v in self.by_component().values()]
        return np.max(np.vstack(per), axis=0)


def x_violations(
    net: NetworkData,
    p_mw: np.ndarray,
    served_mw: np.ndarray,
    available_mw: np.ndarray,
    demand_mw: np.ndarray,
    flows_mw: np.ndarray | None = None,
) -> XViolations:
    """Violations of ``X(t)`` by points ``(p, x)``, recomputed in NumPy.

    Parameters
    ----------
    net : NetworkData
        The network (islands, fixed withdrawals, generator bounds, flow limits).
    p_mw, available_mw : (n_gen,) or (T, n_gen) array
        Generator outputs and available capacities (MW).
    served_mw, demand_mw : (n_node,) or (T, n_node) array
        Served loads and demands (MW).
    flows_mw : (T, n_branch) array, optional
        DC flows of the injections ``net.bus_injection_mw(p, x)`` when the caller has them
        (e.g. :func:`dc_flows_mw` on many intervals); computed independently of any solver's
        own ``pf`` by :meth:`NetworkData.flows_from_injections` otherwise (NaN injections as 0).

    Returns
    -------
    XViolations
        One row per interval (a single point gives one row).
    """
    p = np.atleast_2d(np.asarray(p_mw, dtype=float))
    x = np.atleast_2d(np.asarray(served_mw, dtype=float))
    inj = np.atleast_2d(net.bus_injection_mw(p, x))
    islands = np.unique(net.bus_island)
    onehot = (net.bus_island[:, None] == islands[None, :]).astype(float)
    if flows_mw is None:
        flows_mw = np.atleast_2d(net.flows_from_injections(np.nan_to_num(inj)))
    f_lo, f_hi = flow_limits(net)
    return XViolations(
        islands=islands,
        injection_mw=inj,
        flows_mw=flows_mw,
        balance=positive_part(np.abs(inj @ onehot)),
        gen_below_lower=positive_part(gen_lower_mw(net)[None, :] - p),
        gen_above_available=positive_part(p - np.asarray(available_mw, dtype=float)),
        served_below_zero=positive_part(-x),
        served_above_demand=positive_part(x - np.asarray(demand_mw, dtype=float)),
        flow_above_rating=positive_part(
            np.maximum(flows_mw - f_hi[None, :], f_lo[None, :] - flows_mw)
        ),
    )
