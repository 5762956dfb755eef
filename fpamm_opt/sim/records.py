"""What a run records per interval, and its conversion to the rows of the run's tables.

Role
----
:class:`~fpamm_opt.sim.run.Simulation` yields one :class:`IntervalRecord` per interval;
:meth:`TableLayout.columns` turns it into ``{table: {column: values}}`` with exactly the
columns of :mod:`fpamm_opt.io.schema` (INTERFACE.md, "Run directory"). That dict goes to a
:class:`~fpamm_opt.io.tables.TableBuffer`, the one converter to Arrow, whichever the sink:
Parquet files (:func:`fpamm_opt.run`) or pandas frames in memory (:func:`fpamm_opt.simulate`).

No Pyomo here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fpamm_opt.mechanism.engine import StepRecord
from fpamm_opt.network import NetworkData


@dataclass(frozen=True)
class IntervalRecord:
    """One interval of a run.

    Attributes
    ----------
    step : StepRecord
        Everything the mechanism recorded (inputs, allocation, memory, weights, solves).
    window : int or None
        The scenario's scarcity-window id (``None`` in the normal state).
    """

    step: StepRecord
    window: int | None

    @property
    def t(self) -> int:
        """Interval index."""
        return int(self.step.t)


@dataclass(frozen=True)
class TableLayout:
    """The per-run constant columns of the node, branch and generator tables.

    Attributes
    ----------
    node, bus : (n_node,) int32
        Load-node index and its external bus number.
    tier : (n_node,) int16
        Tier of each node.
    branch : (n_branch,) int32
    rate_mw : (n_branch,) float
        Branch ratings (MW).
    gen, gen_bus : (n_gen,) int32
        Generator index and its external bus number.
    """

    node: np.ndarray
    bus: np.ndarray
    tier: np.ndarray
    branch: np.ndarray
    rate_mw: np.ndarray
    gen: np.ndarray
    gen_bus: np.ndarray

    @classmethod
    def of(cls, net: NetworkData, node_tier: np.ndarray) -> TableLayout:
        """The layout of a run on ``net`` with tiers ``node_tier``."""
        return cls(
            node=np.arange(net.n_node, dtype=np.int32),
            bus=net.node_ids.astype(np.int32),
            tier=np.asarray(node_tier).astype(np.int16),
            branch=np.arange(net.n_branch, dtype=np.int32),
            rate_mw=net.branch_rate_mw,
            gen=np.arange(net.n_gen, dtype=np.int32),
            gen_bus=net.bus_ids[net.gen_bus].astype(np.int32),
        )

    def columns(self, record: IntervalRecord) -> dict[str, dict[str, Any]]:
        """The rows ``record`` adds to each table, as ``{table: {column: values}}``."""
        rec = record.step
        t = int(rec.t)
        res = np.asarray(rec.residuals, dtype=float)
        return {
            "intervals": {
                "t": t,
                "scarce": bool(rec.scarce),
                "window": record.window,
                "tier_order": ">".join(str(int(k)) for k in rec.tier_order),
                "demand_mw": float(rec.demand_mw.sum()),
                "served_mw": float(rec.served_mw.sum()),
                "available_mw": float(np.sum(rec.available_mw)),
                "amm_price": float(rec.amm_price),
                "iterations": int(res.size),
                "q_hat": float(rec.q_hat),
                "q_bound": float(rec.q_bound),
                "q_bound_applies": bool(rec.q_bound_applies),
                "gamma": float(rec.gamma),
                "tier_level_max": float(rec.lambda_max),
                "executed": bool(rec.executed),
                "status": rec.status.value,
                "solve_s": float(rec.solve_s),
                "n_solves": int(rec.n_solves),
                "tracking_error": float(rec.tracking_error),
                "cost": float(rec.cost),
                "deliverable_mw": float(rec.deliverable_mw),
            },
            "nodes": {
                "t": t,
                "node": self.node,
                "bus": self.bus,
                "tier": self.tier,
                "demand_mw": rec.demand_mw,
                "served_mw": rec.served_mw,
                "shortfall_ratio": rec.shortfall_ratio,
                "memory_before": rec.memory_before,
                "memory_after": rec.memory_after,
                "weight": rec.weights,
                "delivery_ratio": rec.delivery_ratio,
                "lmp": rec.lmp,
                "deficit_mwh": rec.deficit_mwh,
                "served_ratio_exact": rec.served_ratio_exact,
            },
            "branches": {
                "t": t,
                "branch": self.branch,
                "flow_mw": rec.flow_mw,
                "rate_mw": self.rate_mw,
            },
            "generators": {
                "t": t,
                "gen": self.gen,
                "bus": self.gen_bus,
                "p_mw": rec.p_gen_mw,
                "available_mw": rec.available_mw,
            },
            "iterations": {"t": t, "m": np.arange(res.size, dtype=np.int32), "residual": res},
            "events": {
                "t": t,
                "kind": np.array([str(e.kind) for e in rec.events], dtype=object),
                "tier": np.array([e.tier for e in rec.events], dtype=object),
                "detail": np.array([e.detail for e in rec.events], dtype=object),
            },
        }


__all__ = ["IntervalRecord", "TableLayout"]
