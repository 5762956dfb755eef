"""Lexicographic served-load bounds of one clear."""

from __future__ import annotations

import numpy as np

#: Tight fixing band (relative to demand, plus MW), near HiGHS's own feasibility tolerance,
#: where an answer must match an exact one: a water-fill trial's check LP, and the first
#: widening of earlier tiers that HiGHS calls infeasible when held exactly.
TIGHT_BAND = (1e-9, 1e-9)
#: The rule's band (relative to demand, plus MW): max-min bottlenecks keep their level within
#: it, and earlier tiers are widened to it when even the tight band is infeasible by solver
#: tolerances (1e-7 relative left some case118 LPs infeasible by ~1e-5 MW).
RULE_BAND = (1e-6, 1e-6)


class LexBounds:
    """Served-load bounds ``lo <= x <= hi`` while tiers are cleared one after another.

    Tiers not reached yet get nothing (``lo = hi = 0``); the tier being cleared is free,
    ``0 <= x_i <= d_i``; a cleared tier is held at its allocation ``x_fixed``, exactly
    (``lo = hi = x``) or within a band ``b``: ``max(x - b, 0) <= x <= min(x + b, d)``.

    Parameters
    ----------
    demand_mw : (n_node,) array
        Demand ``d``.

    Attributes
    ----------
    d, lo, hi, x_fixed : (n_node,) arrays
    fixed : (n_node,) bool array
        Nodes of the tiers cleared so far.
    fixed_mw : float
        Energy given to those tiers.
    band, tight : (n_node,) arrays
        The rule's band ``1e-6 d + 1e-6`` and the tight band ``1e-9 d + 1e-9`` (MW).
    """

    def __init__(self, demand_mw: np.ndarray) -> None:
        d = np.asarray(demand_mw, dtype=float)
        self.d = d
        self.lo = np.zeros(d.size)
        self.hi = np.zeros(d.size)
        self.x_fixed = np.zeros(d.size)
        self.fixed = np.zeros(d.size, dtype=bool)
        self.fixed_mw = 0.0
        self.band = RULE_BAND[0] * d + RULE_BAND[1]
        self.tight = TIGHT_BAND[0] * d + TIGHT_BAND[1]

    def open(self, mem: np.ndarray) -> None:
        """Free tier ``mem``: ``0 <= x_i <= d_i``."""
        self.lo[mem], self.hi[mem] = 0.0, self.d[mem]

    def pinned(
        self, mem: np.ndarray, x: np.ndarray, band: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(lo, hi)`` with tier ``mem`` at ``x``: exactly when ``band`` is None,
        else ``max(x - band, 0) <= x_i <= min(x + band, d)`` (never an equality re-imposed
        from an LP solution)."""
        lo, hi = self.lo.copy(), self.hi.copy()
        if band is None:
            lo[mem] = hi[mem] = x[mem]
        else:
            lo[mem] = np.maximum(x[mem] - band[mem], 0.0)
            hi[mem] = np.minimum(x[mem] + band[mem], self.d[mem])
        return lo, hi

    def fix(self, mem: np.ndarray, x: np.ndarray, band: np.ndarray | None = None) -> None:
        """Tier ``mem`` cleared at ``x`` (see :meth:`pinned`): later solves hold it there."""
        lo, hi = self.pinned(mem, x, band)
        self.lo[mem], self.hi[mem] = lo[mem], hi[mem]
        self.fixed |= mem
        self.fixed_mw += float(x[mem].sum())
        self.x_fixed[mem] = x[mem]

    def available_to(self, mem: np.ndarray, avail_total: float) -> float:
        """The copper-plate bound on tier ``mem``'s energy,
        ``min(Σ_tier d, max(Σ avail - fixed_mw, 0))``."""
        return min(float(self.d[mem].sum()), max(avail_total - self.fixed_mw, 0.0))
