"""Evidence that a node is network-limited: cold re-solves of the intervals it fell short in.

MECHANISM.md §3, "Contracted target": a node's target is contracted only with evidence from
the stored outputs and the network, never from its weights. For node ``i`` and each scarce
interval ``t`` in which it fell short of its tier's ratio (``x_i < r_l d_i``), fresh
``highspy`` solves over ``X(t)`` in PTDF form (:class:`~fpamm_opt.verify.cold.ColdClearing`),
with the tiers cleared before ``i``'s (the stored ``tier_order``) fixed at their stored
allocations, later tiers at 0 and the other nodes of ``i``'s tier free:

1. **reach** ``A``: ``max x_i`` keeping the tier's stored served energy (``Σ_{j in l} x_j >=``
   stored ``- max(1e-6 Σd, 1e-5)`` MW). ``A >= r_l d_i``: node ``i`` could have had its
   tier's ratio at no cost to anyone; no contraction.
2. otherwise, **network maximum** ``B``: ``max x_i`` without that row. ``r_l d_i - B`` (when
   positive) is what the network could not deliver to ``i`` at all.
3. when ``B > A``, the **cost**: ``max Σ_{j in l} x_j`` with ``x_i >= min(r_l d_i, B)``; the
   stored tier energy minus it is how much of its tier's served energy serving ``i`` more
   would take.

The per-interval target is contracted to ``min(r_l d_i, A)``: ``u_i(t) = r_l d_i - A`` MW
(:meth:`~fpamm_opt.verify.underservice.UnderService.contracted`). Earlier tiers are fixed
exactly first, then within :data:`~fpamm_opt.verify.cold.FIX_BANDS` when that is infeasible
by solver tolerances; an interval whose solves all fail gives no evidence (no contraction)
and is counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fpamm_opt.errors import VerificationError
from fpamm_opt.verify.cold import FIX_BANDS, ColdClearing, ColdSolve, tier_slack_mw
from fpamm_opt.verify.context import RunData
from fpamm_opt.verify.feasibility import IntervalArrays, interval_arrays, parse_tier_order
from fpamm_opt.verify.underservice import SHORT_ABS_MW, SHORT_REL, UnderService


@dataclass(frozen=True, eq=False)
class NodeEvidence:
    """What the re-solves of one node's short intervals showed.

    MW sums are over intervals (MW x intervals); multiply by the interval length for MWh.
    """

    column: int  #: column in the :class:`UnderService` arrays
    node: int
    bus: int
    tier: int
    short_intervals: int  #: scarce intervals in which it fell short of its tier's ratio
    short_mw: float  #: ``Σ (r d - x)`` over them
    limited_intervals: int  #: intervals whose reach ``A`` is below ``r d``
    contraction_mw: np.ndarray  #: (T,) ``u_i(t) = r d - A`` where limited, else 0
    undeliverable_mw: float  #: ``Σ (r d - B)⁺``: the network could not deliver it at all
    at_cost_mw: float  #: ``Σ (min(r d, B) - A)⁺``: deliverable only from its tier's energy
    cost_mw: float  #: ``Σ`` tier energy that delivering ``at_cost_mw`` would take
    reachable_mw: float  #: ``Σ (min(r d, A) - x)``: could have been served at no cost
    solves: int
    failed_intervals: int  #: intervals whose re-solves failed (no evidence taken)

    @property
    def network_limited(self) -> bool:
        """Whether the re-solves contracted its target in at least one interval."""
        return self.limited_intervals > 0

    @property
    def contracted_mw(self) -> float:
        """``Σ u_i(t)``: how much its target was contracted (MW x intervals)."""
        return float(self.contraction_mw.sum())

    def describe(self, hours: float) -> str:
        """One sentence with the evidence, energies in MWh (``hours`` per interval)."""

        def mwh(v: float) -> str:
            return f"{v * hours:.4g} MWh"

        text = (
            f"node {self.node} (bus {self.bus}, tier {self.tier}): short of its tier's ratio "
            f"in {self.short_intervals} scarce intervals, {mwh(self.short_mw)}"
        )
        if self.network_limited:
            text += (
                f"; in {self.limited_intervals} of them re-solves show it could not have had "
                f"its tier's ratio without taking energy from its tier: "
                f"{mwh(self.undeliverable_mw)} the network could not deliver at all"
            )
            if self.at_cost_mw > 0:
                text += (
                    f", {mwh(self.at_cost_mw)} only at a cost of {mwh(self.cost_mw)} of its "
                    "tier's served energy"
                )
            text += f"; target contracted by {mwh(self.contracted_mw)}"
        else:
            text += "; re-solves show no interval in which the network kept it from its ratio"
        if self.reachable_mw > 0:
            text += (
                f"; it could have been served {mwh(self.reachable_mw)} more at no cost to its tier"
            )
        if self.failed_intervals:
            text += f"; {self.failed_intervals} intervals' re-solves failed (no evidence taken)"
        return text


@dataclass(frozen=True)
class _Interval:
    """One scarce interval's stored clearing, for the re-solves."""

    demand: np.ndarray
    served: np.ndarray
    available: np.ndarray
    order: list[int] | None


class EvidenceSearch:
    """Re-solves for the nodes of one run (the cold model is built once).

    Parameters
    ----------
    run : RunData
        The run (its network, ``nodes``, ``generators`` and ``intervals`` tables).
    under : UnderService
        The run's under-service (its columns are the network's nodes).
    """

    def __init__(self, run: RunData, under: UnderService) -> None:
        self.run = run
        self.under = under
        net = run.network
        self.arrays: IntervalArrays = interval_arrays(run, net, branches=False)
        if not np.array_equal(self.arrays.t, under.t):
            raise VerificationError("the generators and nodes tables cover different intervals")
        intervals = run.table("intervals")
        if "tier_order" not in intervals.columns:
            raise VerificationError("the intervals table has no tier_order column")
        self.orders = intervals.set_index("t")["tier_order"]
        self.model = ColdClearing(net)
        self.bus = np.asarray(net.node_ids)
        self.solves = 0
        self.seconds = 0.0

    def _interval(self, k: int) -> _Interval:
        a = self.arrays
        d = np.clip(a.demand_mw[k], 0.0, None)
        return _Interval(
            demand=d,
            served=np.clip(a.served_mw[k], 0.0, d),
            available=a.available_mw[k],
            order=parse_tier_order(self.orders.get(int(a.t[k]))),
        )

    def _solve(
        self,
        iv: _Interval,
        col: int,
        earlier: np.ndarray,
        members: np.ndarray,
        *,
        cost: np.ndarray,
        node_floor: float | None = None,
        tier_total: float | None = None,
    ) -> ColdSolve:
        """One solve with earlier tiers fixed (exactly, then within the bands)."""
        d, xs = iv.demand, iv.served
        sol = ColdSolve(False, np.zeros(0), np.zeros(0), message="not solved")
        for rel, abs_mw in FIX_BANDS:
            band = np.where(earlier, rel * d + abs_mw, 0.0)
            lo = np.where(earlier, np.maximum(xs - band, 0.0), 0.0)
            hi = np.where(earlier, np.minimum(xs + band, d), np.where(members, d, 0.0))
            if node_floor is not None:
                lo[col] = min(max(node_floor, 0.0), hi[col])
            total = None if tier_total is None else (members.astype(float), tier_total)
            self.solves += 1
            sol = self.model.solve(iv.available, lo, hi, cost_served=cost, tier_total=total)
            if sol.ok or not earlier.any():
                break
        return sol

    def node(self, col: int) -> NodeEvidence:
        """Re-solve every interval in which node ``col`` fell short (module docstring)."""
        t0, s0 = time.perf_counter(), self.solves
        us = self.under
        tier = int(us.tier[col])
        members = self.arrays.tier == tier
        own = np.zeros(us.node.size)
        own[col] = -1.0
        short = np.flatnonzero(us.shortfall_mw[:, col] > 0)
        contraction = np.zeros(us.n_interval)
        limited = failed = 0
        undeliverable = at_cost = cost_mw = reachable = 0.0
        for k in short:
            iv = self._interval(int(k))
            if iv.order is None or tier not in iv.order:
                failed += 1
                continue
            earlier = np.isin(self.arrays.tier, iv.order[: iv.order.index(tier)])
            d_i = float(iv.demand[col])
            target = float(us.interval_ratio[k, col]) * d_i
            tol = SHORT_REL * d_i + SHORT_ABS_MW
            stored_total = float(iv.served[members].sum())
            slack = tier_slack_mw(iv.demand)
            a = self._solve(iv, col, earlier, members, cost=own, tier_total=stored_total - slack)
            if not a.ok:
                failed += 1
                continue
            reach = min(float(a.served_mw[col]), d_i)
            if reach >= target - tol:
                reachable += max(target - float(iv.served[col]), 0.0)
                continue
            limited += 1
            contraction[k] = target - reach
            reachable += max(reach - float(iv.served[col]), 0.0)
            b = self._solve(iv, col, earlier, members, cost=own)
            net_max = max(min(float(b.served_mw[col]), d_i), reach) if b.ok else reach
            undeliverable += max(target - net_max, 0.0)
            want = min(target, net_max)
            if want > reach + tol:
                c = self._solve(
                    iv, col, earlier, members, cost=-members.astype(float), node_floor=want - tol
                )
                at_cost += want - reach
                if c.ok:
                    cost_mw += max(stored_total - float(c.served_mw[members].sum()), 0.0)
                else:
                    cost_mw = math.nan
        self.seconds += time.perf_counter() - t0
        return NodeEvidence(
            column=col,
            node=int(us.node[col]),
            bus=int(self.bus[col]) if col < self.bus.size else -1,
            tier=tier,
            short_intervals=int(short.size),
            short_mw=float(us.shortfall_mw[:, col].sum()),
            limited_intervals=limited,
            contraction_mw=contraction,
            undeliverable_mw=undeliverable,
            at_cost_mw=at_cost,
            cost_mw=cost_mw,
            reachable_mw=reachable,
            solves=self.solves - s0,
            failed_intervals=failed,
        )

    def nodes(self, columns: Iterable[int]) -> list[NodeEvidence]:
        """:meth:`node` for each column."""
        return [self.node(int(c)) for c in columns]
