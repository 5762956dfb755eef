"""Shortage memory: shortfall ratios and the saturated-integrator update (Thm 1).

Role
----
The memory ``s_i(t) in [0, 1]`` is the only state FP-AMM carries between intervals. Its update
``s(t+1) = sat_[0,1]((1 - beta) s(t) + beta u(t))`` keeps ``[0, 1]^N`` invariant and is a
contraction with rate ``1 - beta`` in the sup norm (saturation is 1-Lipschitz).
"""

from __future__ import annotations

import numpy as np

__all__ = ["shortfall_ratio", "update_memory"]


def shortfall_ratio(served: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Shortfall ratio ``u = 1 - x / d`` per node.

    Parameters
    ----------
    served : (n_node,) array
        Served load ``x`` (MW).
    demand : (n_node,) array
        Demand ``d`` (MW), ``>= 0``.

    Returns
    -------
    (n_node,) array
        ``u`` clipped to ``[0, 1]``; ``0`` where ``d == 0`` (nothing requested, nothing missed).
    """
    x = np.asarray(served, dtype=float)
    d = np.asarray(demand, dtype=float)
    pos = d > 0
    u = np.zeros(np.broadcast_shapes(x.shape, d.shape))
    np.divide(x, d, out=u, where=pos)
    u = np.where(pos, 1.0 - u, 0.0)
    return np.clip(u, 0.0, 1.0)


def update_memory(s: np.ndarray, u: np.ndarray, beta: float) -> np.ndarray:
    """Saturated-integrator memory update (Thm 1).

    ``s' = clip((1 - beta) s + beta u, 0, 1)``.

    Parameters
    ----------
    s : (n_node,) array
        Memory at the start of the interval.
    u : (n_node,) array
        Shortfall ratio of the interval.
    beta : float
        Gain in ``(0, 1]``.

    Returns
    -------
    (n_node,) array
        Memory at the start of the next interval (a new array).
    """
    s_arr = np.asarray(s, dtype=float)
    u_arr = np.asarray(u, dtype=float)
    return np.clip((1.0 - beta) * s_arr + beta * u_arr, 0.0, 1.0)
