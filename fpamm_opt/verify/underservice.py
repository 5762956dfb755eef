"""Under-service against contracted targets: the quantity T5 judges (MECHANISM.md §3, §6).

Everything is computed from ``nodes.served_mw``, ``nodes.demand_mw`` and ``nodes.tier``
alone (no deficit column is needed), vectorised over ``(T, n)`` arrays.

Symbols (``t = 1..T`` counts intervals, cumulative quantities run *through* ``t``):

- ``r_l(t) = Σ_{j in l} x_j(t) / Σ_{j in l} d_j(t)``: tier ``l``'s served ratio in interval
  ``t`` (1 when the tier requested nothing). A node *fell short* of its tier in ``t`` when
  ``x_i(t) < r_l(t) d_i(t)`` beyond :data:`SHORT_REL` ``d + ``:data:`SHORT_ABS_MW`.
- ``C_i(t) = Σ_τ d_i(τ)``, ``F_i(t) = Σ_τ x_i(τ) / C_i(t)``, ``F^agg_l(t)`` the tier's
  cumulative ratio.
- Contracted target ``F*_i(t) = F^agg_l(i)(t) - U_i(t) / C_i(t)``, where ``U_i(t) = Σ_τ
  u_i(τ)`` accumulates the per-interval contraction ``u_i(τ) = r_l d_i - min(r_l d_i,
  x_i^max)`` found by re-solves (:mod:`fpamm_opt.verify.evidence`); ``u = 0`` for a node
  without evidence. When the spec sets a target ``v`` for a tier, ``v`` replaces both
  ``F^agg_l`` and ``r_l``.
- Under-service gap (MW x intervals) ``G_i(t) = (F*_i(t) - F_i(t)) C_i(t)``: the energy node
  ``i`` is owed against its contracted target, in units of one interval. Without contraction
  it is the deficit ``D_i`` of §3 up to the drift of the node's demand share within its tier.
- ``E(t) = max_i (F*_i(t) - F_i(t))⁺``: over-service is never a deficit.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from fpamm_opt.verify.context import RunData, as_run
from fpamm_opt.verify.panel import NodePanel

#: Under-service below this share of a node's cumulative demand is numerical (solver
#: tolerances are ~1e-6 of demand): ``G_i(t)`` counts only above ``RATIO_TOL · C_i(t)``.
RATIO_TOL = 1e-6
#: A node fell short of its tier's ratio in an interval when ``x < r d - (SHORT_REL d +
#: SHORT_ABS_MW)`` (the allocator's slack on a tier's energy is ``max(1e-6 Σd, 1e-5)`` MW).
SHORT_REL = 1e-6
SHORT_ABS_MW = 1e-5


@dataclass(frozen=True, eq=False)
class UnderService:
    """Demand, service and contracted targets of every node of one run.

    Attributes
    ----------
    t : (T,) int
        Interval ids, sorted.
    node : (n,) int
        Node ids, sorted.
    tier : (n,) int
        Tier of each node.
    demand_mw, served_mw : (T, n) float
        ``d_i(t)`` and ``x_i(t)``.
    fixed_target : (n,) float
        The spec's target ratio of the node's tier, ``nan`` where the spec sets none.
    contraction_mw : (T, n) float
        ``u_i(t)``: MW of the interval target the network could not deliver (0 without
        evidence).
    """

    t: np.ndarray
    node: np.ndarray
    tier: np.ndarray
    demand_mw: np.ndarray
    served_mw: np.ndarray
    fixed_target: np.ndarray
    contraction_mw: np.ndarray

    @classmethod
    def from_panel(
        cls, panel: NodePanel, targets: Mapping[int, float | None] | None = None
    ) -> UnderService:
        """From a :class:`NodePanel`; ``targets`` maps a tier to the spec's target ratio."""
        fixed = np.full(panel.node.size, np.nan)
        for tier, v in (targets or {}).items():
            if v is not None:
                fixed[panel.tier == int(tier)] = float(v)
        return cls(
            t=panel.t,
            node=panel.node,
            tier=panel.tier,
            demand_mw=np.clip(panel.demand_mw, 0.0, None),
            served_mw=np.clip(panel.served_mw, 0.0, None),
            fixed_target=fixed,
            contraction_mw=np.zeros_like(panel.demand_mw),
        )

    @classmethod
    def from_run(cls, run: RunData) -> UnderService:
        """From a run's ``nodes`` table, with the spec's tier targets (if any)."""
        run = as_run(run)
        panel = NodePanel.from_nodes(run.table("nodes"))
        targets = {int(k): run.context.target_of_tier(int(k)) for k in panel.tiers}
        return cls.from_panel(panel, targets)

    def contracted(self, contraction_mw: np.ndarray) -> UnderService:
        """The same run with per-interval contractions ``u_i(t)`` (MW, ``(T, n)``)."""
        u = np.clip(np.asarray(contraction_mw, dtype=float), 0.0, None)
        return replace(self, contraction_mw=u)

    # ------------------------------------------------------------------ per interval
    @property
    def n_interval(self) -> int:
        return int(self.t.size)

    @functools.cached_property
    def _tier_cols(self) -> tuple[np.ndarray, np.ndarray]:
        tiers, col = np.unique(self.tier, return_inverse=True)
        return tiers, col

    @functools.cached_property
    def tier_ratio(self) -> np.ndarray:
        """``r_l(t)`` per tier (columns in sorted tier order), ``(T, K)``."""
        tiers, col = self._tier_cols
        m = (col[:, None] == np.arange(tiers.size)[None, :]).astype(float)
        dx, dd = self.served_mw @ m, self.demand_mw @ m
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(dd > 0, np.minimum(dx / np.where(dd > 0, dd, 1.0), 1.0), 1.0)

    @functools.cached_property
    def interval_ratio(self) -> np.ndarray:
        """The ratio each node is held to in each interval: ``r_l(i)(t)`` or the spec's
        target, ``(T, n)``."""
        r = self.tier_ratio[:, self._tier_cols[1]]
        fixed = np.isfinite(self.fixed_target)
        return np.where(fixed[None, :], self.fixed_target[None, :], r)

    @functools.cached_property
    def shortfall_mw(self) -> np.ndarray:
        """``r d - x`` where the node fell short of its tier's ratio, else 0, ``(T, n)``."""
        gap = self.interval_ratio * self.demand_mw - self.served_mw
        tol = SHORT_REL * self.demand_mw + SHORT_ABS_MW
        return np.where(gap > tol, gap, 0.0)

    @functools.cached_property
    def scarce(self) -> np.ndarray:
        """Intervals in which some tier was served less than it requested, ``(T,)``."""
        short = self.demand_mw.sum(axis=1) - self.served_mw.sum(axis=1)
        tol = SHORT_REL * self.demand_mw.sum(axis=1) + SHORT_ABS_MW
        return np.asarray(short > tol)

    @functools.cached_property
    def cuts(self) -> np.ndarray:
        """Where a block of intervals may end: before a non-scarce interval, or at ``T``.

        Blocks that never split a scarcity window are what makes the long-run scale of
        :func:`fpamm_opt.verify.rate.long_run_scale` honest when the increments of ``G`` are
        correlated within a window.
        """
        nxt = np.r_[~self.scarce[1:], True]
        return np.asarray(nxt, dtype=bool)

    # ------------------------------------------------------------------ cumulative
    @functools.cached_property
    def cum_demand_mw(self) -> np.ndarray:
        """``C_i(t)``, ``(T, n)``."""
        return np.cumsum(self.demand_mw, axis=0)

    @functools.cached_property
    def delivery_ratio(self) -> np.ndarray:
        """``F_i(t)`` (1 while nothing was requested), ``(T, n)``."""
        return _ratio(np.cumsum(self.served_mw, axis=0), self.cum_demand_mw)

    @functools.cached_property
    def tier_target(self) -> np.ndarray:
        """``F^agg_l(i)(t)`` (or the spec's target), before contraction, ``(T, n)``."""
        tiers, col = self._tier_cols
        m = (col[:, None] == np.arange(tiers.size)[None, :]).astype(float)
        agg = _ratio(np.cumsum(self.served_mw @ m, axis=0), np.cumsum(self.demand_mw @ m, axis=0))
        out = agg[:, col]
        fixed = np.isfinite(self.fixed_target)
        return np.where(fixed[None, :], self.fixed_target[None, :], out)

    @functools.cached_property
    def gap_mw(self) -> np.ndarray:
        """``G_i(t) = (F*_i(t) - F_i(t)) C_i(t)`` (MW x intervals), ``(T, n)``."""
        c = self.cum_demand_mw
        return (self.tier_target - self.delivery_ratio) * c - np.cumsum(self.contraction_mw, axis=0)

    @functools.cached_property
    def tol_mw(self) -> np.ndarray:
        """Numerical tolerance on ``G``: ``RATIO_TOL · C_i(t)``, ``(T, n)``."""
        return RATIO_TOL * self.cum_demand_mw

    @functools.cached_property
    def target(self) -> np.ndarray:
        """Contracted target ``F*_i(t)``, ``(T, n)``."""
        return self.delivery_ratio + _ratio(self.gap_mw, self.cum_demand_mw, empty=0.0)

    @functools.cached_property
    def under_service(self) -> np.ndarray:
        """``(F*_i(t) - F_i(t))⁺`` above the numerical tolerance, ``(T, n)``."""
        g = np.clip(self.gap_mw - self.tol_mw, 0.0, None)
        return _ratio(g, self.cum_demand_mw, empty=0.0)

    @functools.cached_property
    def error(self) -> np.ndarray:
        """``E(t) = max_i (F*_i(t) - F_i(t))⁺``, ``(T,)``."""
        if self.n_interval == 0 or self.node.size == 0:
            return np.zeros(self.n_interval)
        return np.asarray(self.under_service.max(axis=1))


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = 1.0) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), empty)
