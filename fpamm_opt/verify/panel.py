"""Long tables pivoted to dense ``(T, n)`` arrays and delivery ratios.

Shared by the checks and by :mod:`fpamm_opt.report.metrics`. Everything is vectorised: a run of
``T = 5000`` intervals and 100 nodes is a handful of ``(5000, 100)`` arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fpamm_opt.errors import VerificationError


def require_columns(df: pd.DataFrame, table: str, columns: Sequence[str]) -> None:
    """Raise :class:`VerificationError` naming the columns ``table`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise VerificationError(f"table {table!r} lacks column(s) {', '.join(missing)}")


def bool_array(values: pd.Series) -> np.ndarray:
    """A boolean column as a NumPy array, missing values as ``False``."""
    return pd.array(values, dtype="boolean").fillna(False).to_numpy(dtype=bool)


def pivot(
    df: pd.DataFrame, key: str, values: Sequence[str], fill: float = np.nan, table: str = "table"
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Pivot a long table with columns ``t``, ``key``, ``values`` into ``(T, n)`` arrays.

    Parameters
    ----------
    df : DataFrame
        Long table, one row per ``(t, key)``.
    key : str
        Second index column (``node``, ``gen``, ``branch``).
    values : sequence of str
        Value columns to pivot.
    fill : float
        Value of ``(t, key)`` pairs absent from the table.
    table : str
        Table name for error messages.

    Returns
    -------
    t : (T,) ndarray
        Sorted interval ids.
    keys : (n,) ndarray
        Sorted key values.
    arrays : dict of (T, n) ndarray
        One dense array per value column.
    """
    require_columns(df, table, ["t", key, *values])
    ti, t_vals = pd.factorize(df["t"], sort=True)
    ki, k_vals = pd.factorize(df[key], sort=True)
    t_vals, k_vals = np.asarray(t_vals), np.asarray(k_vals)
    if (ti < 0).any() or (ki < 0).any():
        raise VerificationError(f"table {table!r} has missing t or {key} values")
    flat = ti.astype(np.int64) * k_vals.size + ki
    if flat.size and np.bincount(flat, minlength=t_vals.size * k_vals.size).max() > 1:
        raise VerificationError(f"table {table!r} has duplicate (t, {key}) rows")
    out: dict[str, np.ndarray] = {}
    for col in values:
        arr = np.full(t_vals.size * k_vals.size, fill, dtype=float)
        arr[flat] = df[col].to_numpy(dtype=float, na_value=np.nan)
        out[col] = arr.reshape(t_vals.size, k_vals.size)
    return t_vals, k_vals, out


@dataclass(frozen=True, eq=False)
class NodePanel:
    """Demand and served load of every node in every interval, as dense arrays.

    Attributes
    ----------
    t : (T,) int
        Interval ids, sorted.
    node : (n,) int
        Node ids, sorted.
    tier : (n,) int
        Tier of each node (its first recorded tier).
    demand_mw, served_mw : (T, n) float
        Missing ``(t, node)`` rows count as zero demand and zero service.
    """

    t: np.ndarray
    node: np.ndarray
    tier: np.ndarray
    demand_mw: np.ndarray
    served_mw: np.ndarray

    @classmethod
    def from_nodes(cls, nodes: pd.DataFrame) -> NodePanel:
        """Build from the ``nodes`` table (columns ``t, node, tier, demand_mw, served_mw``)."""
        t, node, arr = pivot(nodes, "node", ["demand_mw", "served_mw"], fill=0.0, table="nodes")
        require_columns(nodes, "nodes", ["tier"])
        first = nodes.drop_duplicates("node").set_index("node")["tier"]
        tier = first.reindex(node).to_numpy(dtype=int)
        return cls(
            t=t, node=node, tier=tier, demand_mw=arr["demand_mw"], served_mw=arr["served_mw"]
        )

    @property
    def n_interval(self) -> int:
        return int(self.t.size)

    @property
    def tiers(self) -> np.ndarray:
        """Distinct tiers, sorted."""
        return np.unique(self.tier)

    def tier_matrix(self) -> np.ndarray:
        """One-hot ``(n, K)`` membership of nodes in :attr:`tiers`."""
        return (self.tier[:, None] == self.tiers[None, :]).astype(float)


def cumulative_ratio(served: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """``Σ_{τ<=t} served / Σ_{τ<=t} demand`` along axis 0; 1 while nothing was requested."""
    cx = np.cumsum(served, axis=0)
    cd = np.cumsum(demand, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cd > 0, cx / np.where(cd > 0, cd, 1.0), 1.0)


def delivery_ratio(panel: NodePanel) -> np.ndarray:
    """Cumulative delivery ratio ``F_i(t)`` through interval ``t``, shape ``(T, n)``."""
    return cumulative_ratio(panel.served_mw, panel.demand_mw)


def tier_delivery_ratio(panel: NodePanel) -> np.ndarray:
    """Tier aggregate ``F^agg_l(t)`` (tier energy served / requested), shape ``(T, K)``."""
    m = panel.tier_matrix()
    return cumulative_ratio(panel.served_mw @ m, panel.demand_mw @ m)


def fairness_error(panel: NodePanel) -> np.ndarray:
    """``e_i(t) = |F_i(t) - F^agg_{tier(i)}(t)|``, shape ``(T, n)``."""
    f = delivery_ratio(panel)
    agg = tier_delivery_ratio(panel)
    col = np.searchsorted(panel.tiers, panel.tier)
    return np.abs(f - agg[:, col])
