"""Lazy PTDF branch rows: which flow limits an LP carries, and the NumPy check that adds more.

Role
----
The PTDF form of ``X(t)`` needs one row per limited branch, each as wide as the network
(10.8 M coefficients on case3012wp_k). Few of them ever bind. :class:`FlowMonitor` keeps the
*monitored* set of branches whose rows are in the LP and, after each solve, checks the
solution's flows on **every** branch with one sparse-LU solve
(:meth:`~fpamm_opt.network.NetworkData.flows_from_injections`). Branches beyond their limits
bring their rows in and the LP is solved again (hot), until no flow exceeds its limit by more
than :data:`FLOW_TOL_MW`. Rows are generated from the sparse LU, a few at a time
(:meth:`~fpamm_opt.network.NetworkData.ptdf_rows`); the dense PTDF is never formed.

Why the answer is the full PTDF's: the monitored rows describe a set that contains ``X(t)``
(fewer constraints). A point optimal over that larger set and inside ``X(t)`` (the exact flow
check) is optimal over ``X(t)``; an infeasible LP over the larger set means ``X(t)`` is
empty. Duals of unmonitored rows are zero.

Design, after Egret's ``lazy_ptdf_utils`` and PowerModels' ``solve_opf_ptdf_branch_power_cuts!``
(read, not copied):

- a branch is a candidate once its flow passes :data:`MONITOR_FRACTION` of a limit (99 %),
  so rows that are about to bind come in with those that do; at most :attr:`max_add`
  candidates (the worst) per round, and a round happens only while some flow is actually
  violated;
- coefficients are dropped by :func:`~fpamm_opt.network.ptdf_keep_mask`
  (``|H_lb| < max(1e-10, 1e-6 · max_b |H_lb|)``). The check is exact, and a monitored
  branch whose exact flow is within :data:`BIND_FRACTION` of a limit (binding, or past it
  by the dropped entries' doing) gets its full row back (:meth:`FlowMonitor.check`,
  ``repair``) and the LP runs again: the rows that bind at the answer are exact, so the
  answer is the full PTDF's (rows that do not bind do not move an LP's optimum), while rows
  that never bind stay sparse;
- the monitored set lives as long as the engine: the per-interval model is re-solved for
  every interval, and rows found binding in one interval stay for the next. Rows are never
  removed (the set is the union of the branches that came near a limit in the run).

NumPy only (no Pyomo): the engine (:mod:`fpamm_opt.fastpath`) turns :class:`FlowRow` into
solver rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpamm_opt.network import UNBOUNDED_FLOW_MW, NetworkData, ptdf_keep_mask

__all__ = [
    "BIND_FRACTION",
    "FLOW_TOL_MW",
    "MONITOR_FRACTION",
    "FlowCheck",
    "FlowMonitor",
    "FlowRow",
]

#: A flow may exceed its limit by this much (MW) and the point still counts as in ``X(t)``.
FLOW_TOL_MW = 1e-6

#: A branch becomes a candidate row once its flow passes this fraction of a limit.
MONITOR_FRACTION = 0.99

#: A monitored row counts as binding (and is made exact) past this fraction of a limit or
#: within :data:`FLOW_TOL_MW` of it; above the error the dropped entries can make.
BIND_FRACTION = 1.0 - 1e-4


@dataclass(frozen=True)
class FlowRow:
    """One branch's flow row in generator / served-load space.

    ``pf_l - Σ_g H_{l,bus(g)} pg_g + Σ_i H_{l,bus(i)} pl_i = rhs``, with
    ``rhs = H_l · (shift_inj - fixed) - shift_flow_l`` computed from the full row.

    Attributes
    ----------
    branch : int
        Branch index.
    gen, gen_coef : arrays
        Generators with a kept coefficient and that coefficient (``-H``).
    node, node_coef : arrays
        Load nodes with a kept coefficient and that coefficient (``+H``).
    rhs : float
        Right-hand side (MW).
    exact : bool
        No coefficient was dropped.
    """

    branch: int
    gen: np.ndarray
    gen_coef: np.ndarray
    node: np.ndarray
    node_coef: np.ndarray
    rhs: float
    exact: bool


@dataclass(frozen=True)
class FlowCheck:
    """Outcome of one flow check.

    Attributes
    ----------
    flows_mw : (n_branch,) array
        Exact DC flows of the solution.
    worst_mw : float
        Largest violation of a flow limit (MW, 0 when none).
    add : array of int
        Unmonitored branches whose rows come in now.
    repair : array of int
        Monitored branches whose rows get their dropped coefficients back.
    """

    flows_mw: np.ndarray
    worst_mw: float
    add: np.ndarray
    repair: np.ndarray

    @property
    def done(self) -> bool:
        """No row to add or repair: the point is in ``X(t)`` within :data:`FLOW_TOL_MW`."""
        return self.add.size == 0 and self.repair.size == 0


class FlowMonitor:
    """The monitored branch rows of a lazy PTDF model (see module docstring).

    Parameters
    ----------
    net : NetworkData
    max_add : int
        Most new rows per round (the worst candidates first).

    Attributes
    ----------
    rows : list of FlowRow
        Monitored rows, in the order they entered (the solver's row order).
    version : list of int
        Per monitored row, how often it was rebuilt (a repair bumps it).
    """

    def __init__(self, net: NetworkData, max_add: int = 10) -> None:
        self.net = net
        self.max_add = int(max_add)
        lo, hi = net.flow_limits_mw()
        self._lo = np.where(lo <= -UNBOUNDED_FLOW_MW, -np.inf, lo)
        self._hi = np.where(hi >= UNBOUNDED_FLOW_MW, np.inf, hi)
        self._near_lo = self._lo + (1.0 - MONITOR_FRACTION) * np.abs(self._lo)
        self._near_hi = self._hi - (1.0 - MONITOR_FRACTION) * np.abs(self._hi)
        slack = np.maximum((1.0 - BIND_FRACTION) * np.maximum(np.abs(lo), np.abs(hi)), 0.0)
        self._bind_slack = np.where(np.isfinite(slack), slack, 0.0) + FLOW_TOL_MW
        self._const = net.shift_injection_mw - net.bus_fixed_withdrawal_mw
        self.rows: list[FlowRow] = []
        self.version: list[int] = []
        self.position: dict[int, int] = {}
        #: Flow checks and rounds that added or repaired rows, over the monitor's life.
        self.n_checks = 0
        self.n_rounds = 0

    @property
    def monitored(self) -> np.ndarray:
        """Monitored branch indices, in row order."""
        return np.fromiter(self.position, dtype=int, count=len(self.position))

    def make_rows(self, branches: np.ndarray, exact: bool = False) -> list[FlowRow]:
        """Rows of ``branches`` from the sparse LU, coefficients dropped unless ``exact``."""
        net = self.net
        h = net.ptdf_rows(branches)
        keep = np.abs(h) > 0.0 if exact else ptdf_keep_mask(h)
        rhs = h @ self._const - net.shift_flow_mw[branches]
        out = []
        for r, k in enumerate(np.asarray(branches, dtype=int).tolist()):
            kg = keep[r, net.gen_bus]
            kn = keep[r, net.node_bus]
            out.append(
                FlowRow(
                    branch=k,
                    gen=np.flatnonzero(kg),
                    gen_coef=-h[r, net.gen_bus][kg],
                    node=np.flatnonzero(kn),
                    node_coef=h[r, net.node_bus][kn],
                    rhs=float(rhs[r]),
                    exact=exact or bool(keep[r].sum() == np.count_nonzero(h[r])),
                )
            )
        return out

    def check(self, p_gen_mw: np.ndarray, served_mw: np.ndarray) -> FlowCheck:
        """Exact flows of a solution and the rows to add or repair.

        Every binding (:data:`BIND_FRACTION`) monitored row that is not exact is repaired.
        Nothing is added when no flow exceeds its limit by more than :data:`FLOW_TOL_MW`;
        otherwise up to
        :attr:`max_add` unmonitored branches past :data:`MONITOR_FRACTION` of a limit come
        in, the worst first (measured past that inner limit).
        """
        self.n_checks += 1
        net = self.net
        flows = net.flows_from_injections(net.bus_injection_mw(p_gen_mw, served_mw))
        viol = np.maximum(flows - self._hi, self._lo - flows)
        worst = float(max(viol.max(initial=0.0), 0.0))
        mon = np.zeros(net.n_branch, dtype=bool)
        mon[self.monitored] = True
        binding = np.flatnonzero(mon & (viol > -self._bind_slack))
        repair = np.array(
            [k for k in binding.tolist() if not self.rows[self.position[k]].exact], dtype=int
        )
        if worst <= FLOW_TOL_MW:
            return FlowCheck(flows, worst, np.zeros(0, dtype=int), repair)
        near = np.maximum(flows - self._near_hi, self._near_lo - flows)
        cand = np.flatnonzero(~mon & (near > 0.0))
        add = cand[np.argsort(-near[cand], kind="stable")][: self.max_add]
        return FlowCheck(flows, worst, add.astype(int), repair.astype(int))

    def apply(self, chk: FlowCheck) -> None:
        """Add the rows of ``chk.add`` and rebuild those of ``chk.repair`` exactly."""
        if chk.done:
            return
        self.n_rounds += 1
        for row in self.make_rows(chk.add):
            self.position[row.branch] = len(self.rows)
            self.rows.append(row)
            self.version.append(0)
        if chk.repair.size:
            for row in self.make_rows(chk.repair, exact=True):
                pos = self.position[row.branch]
                self.rows[pos] = row
                self.version[pos] += 1
