"""Deficit recursion of the Fair Play priority rule (MECHANISM.md section 3, Thm 5).

Role
----
The memory forgets at rate ``beta``; the fairness error it should correct is cumulative. Each
node therefore also carries a **deficit** ``D_i`` (MWh), the energy it is owed against its
tier's common served ratio:

    ``D_i(t+1) = D_i(t) + (r_l(t) d_i(t) - x_i(t)) dt``,  ``D_i(0) = 0``,
    ``r_l(t) = sum_{j in l} x_j(t) / sum_{j in l} d_j(t)``  (1 when tier ``l`` has no demand),

with ``dt`` the interval length (h). A fully served interval has ``r_l = 1`` and
``x_i = d_i``, so it leaves ``D`` unchanged; in every interval ``sum_{i in l} D_i`` changes by
``r_l D_l - X_l = 0``, so a tier's deficits always sum to 0 (up to rounding).

The signed under-service ``delta_i(t) = D_i(t) / C_i(t)``, with ``C_i(t) =
sum_{tau<t} d_i(tau) dt`` the node's requested energy so far (MWh), is approximately
``F^agg_l(t) - F_i(t)``; the Fair Play weights use its positive part ``delta_i^+`` (0 while a
node has had no demand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpamm_opt.errors import InputError

__all__ = [
    "DeficitState",
    "coupled_deficit",
    "deficit_share",
    "tier_served_ratio",
    "under_service",
    "update_deficit",
]


@dataclass(frozen=True, eq=False)
class DeficitState:
    """What the deficit weights of interval ``t`` read (the mechanism owns and commits it).

    Attributes
    ----------
    deficit_mwh : (n_node,) array
        ``D(t)`` at the start of the interval (MWh).
    demand_mwh : (n_node,) array
        ``C(t) = sum_{tau<t} d(tau) dt``, the energy requested before the interval (MWh).
    interval_h : float
        Interval length ``dt`` (h), ``> 0``.
    """

    deficit_mwh: np.ndarray
    demand_mwh: np.ndarray
    interval_h: float

    def __post_init__(self) -> None:
        dt = float(self.interval_h)
        if not (dt > 0 and np.isfinite(dt)):
            raise InputError(f"the interval length must be > 0 hours, got {self.interval_h!r}")
        d = np.asarray(self.deficit_mwh, dtype=float)
        c = np.asarray(self.demand_mwh, dtype=float)
        if d.shape != c.shape or d.ndim != 1:
            raise InputError(
                f"deficit_mwh {d.shape} and demand_mwh {c.shape} must be equal 1-d shapes"
            )
        object.__setattr__(self, "deficit_mwh", d)
        object.__setattr__(self, "demand_mwh", c)
        object.__setattr__(self, "interval_h", dt)

    @classmethod
    def zero(cls, n_node: int, interval_h: float) -> DeficitState:
        """The state at ``t = 0``: no deficit, nothing requested yet."""
        return cls(np.zeros(int(n_node)), np.zeros(int(n_node)), interval_h)

    @property
    def under_service(self) -> np.ndarray:
        """``delta^+(t) = max(D(t), 0) / C(t)`` (0 where ``C(t) == 0``)."""
        return under_service(self.deficit_mwh, self.demand_mwh)


def tier_served_ratio(
    served: np.ndarray, demand: np.ndarray, node_tier: np.ndarray, n_tier: int
) -> np.ndarray:
    """Served ratio ``r_l = sum_{j in l} x_j / sum_{j in l} d_j`` of each tier.

    Parameters
    ----------
    served : (n_node,) array
        Served load ``x`` (MW).
    demand : (n_node,) array
        Demand ``d`` (MW), ``>= 0``.
    node_tier : (n_node,) int array
        Tier of each node, ``0..n_tier-1``.
    n_tier : int
        Number of tiers ``K``.

    Returns
    -------
    (n_tier,) array
        ``r_l``; 1 for a tier without demand.
    """
    tier = np.asarray(node_tier, dtype=int)
    x_l = np.bincount(tier, weights=np.asarray(served, dtype=float), minlength=int(n_tier))
    d_l = np.bincount(tier, weights=np.asarray(demand, dtype=float), minlength=int(n_tier))
    r = np.ones(int(n_tier))
    np.divide(x_l, d_l, out=r, where=d_l > 0)
    return r


def _increment(
    served: np.ndarray,
    demand: np.ndarray,
    node_tier: np.ndarray,
    n_tier: int,
    interval_h: float,
) -> np.ndarray:
    """``(r_l(i) d_i - x_i) dt`` per node (MWh)."""
    x = np.asarray(served, dtype=float)
    d = np.asarray(demand, dtype=float)
    tier = np.asarray(node_tier, dtype=int)
    r = tier_served_ratio(x, d, tier, n_tier)
    return (r[tier] * d - x) * float(interval_h)


def update_deficit(
    deficit_mwh: np.ndarray,
    served: np.ndarray,
    demand: np.ndarray,
    node_tier: np.ndarray,
    n_tier: int,
    interval_h: float,
) -> np.ndarray:
    """One step of the deficit recursion, ``D' = D + (r_l d - x) dt``.

    Parameters
    ----------
    deficit_mwh : (n_node,) array
        Deficit ``D(t)`` at the start of the interval (MWh).
    served, demand : (n_node,) arrays
        ``x(t)`` and ``d(t)`` (MW).
    node_tier : (n_node,) int array
        Tier of each node.
    n_tier : int
        Number of tiers ``K``.
    interval_h : float
        Interval length ``dt`` (h), ``> 0``.

    Returns
    -------
    (n_node,) array
        ``D(t+1)`` (MWh, a new array).
    """
    return np.asarray(deficit_mwh, dtype=float) + _increment(
        served, demand, node_tier, n_tier, interval_h
    )


def coupled_deficit(
    deficit_mwh: np.ndarray,
    served: np.ndarray,
    demand: np.ndarray,
    node_tier: np.ndarray,
    n_tier: int,
    interval_h: float,
    gamma: float,
) -> np.ndarray:
    """Deficit the interval would leave with coupling ``gamma``.

    ``D_gamma(x) = D + gamma (r_l(x) d - x) dt`` (``gamma = 1``: :func:`update_deficit`).
    """
    return np.asarray(deficit_mwh, dtype=float) + float(gamma) * _increment(
        served, demand, node_tier, n_tier, interval_h
    )


def under_service(deficit_mwh: np.ndarray, demand_mwh: np.ndarray) -> np.ndarray:
    """Positive under-service ``delta^+ = max(D, 0) / C`` per node.

    Parameters
    ----------
    deficit_mwh : (n_node,) array
        Deficit ``D`` (MWh).
    demand_mwh : (n_node,) array
        Requested energy ``C`` the deficit is measured against (MWh, ``>= 0``).

    Returns
    -------
    (n_node,) array
        ``max(D, 0) / C``; 0 where ``C == 0`` (a node that has had no demand is owed nothing
        relative to anything).
    """
    c = np.asarray(demand_mwh, dtype=float)
    pos = np.maximum(np.asarray(deficit_mwh, dtype=float), 0.0)
    out = np.zeros(np.broadcast_shapes(pos.shape, c.shape))
    np.divide(pos, c, out=out, where=c > 0)
    return out


def deficit_share(
    demand: np.ndarray, demand_through_mwh: np.ndarray, interval_h: float
) -> np.ndarray:
    """Share ``kappa_i = d_i dt / C_i`` of this interval in the node's requested energy.

    ``C_i`` counts this interval (``C_i >= d_i dt``), so ``kappa_i in [0, 1]``; 0 for a node
    without demand now. ``kappa_i`` is the Lipschitz factor of ``delta_gamma,i`` in ``u_i``
    per unit coupling (clearing.py, "Deficit weights").

    Parameters
    ----------
    demand : (n_node,) array
        ``d(t)`` (MW).
    demand_through_mwh : (n_node,) array
        ``C_i = sum_{tau<=t} d_i(tau) dt`` (MWh).
    interval_h : float
        ``dt`` (h).
    """
    e = np.asarray(demand, dtype=float) * float(interval_h)
    c = np.asarray(demand_through_mwh, dtype=float)
    out = np.zeros(np.broadcast_shapes(e.shape, c.shape))
    np.divide(e, c, out=out, where=(c > 0) & (e > 0))
    return np.clip(out, 0.0, 1.0)
