"""The bounds of ``X(t)`` as the verifier reads them from :class:`~fpamm_opt.network.NetworkData`.

Shared by the feasibility re-check (:mod:`fpamm_opt.verify.feasibility`) and the cold replay
(:mod:`fpamm_opt.verify.cold`), which both build ``X(t)`` from the network's arrays alone.
NumPy only.
"""

from __future__ import annotations

import numpy as np

from fpamm_opt.network import NetworkData


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


__all__ = ["flow_limits", "gen_lower_mw"]
