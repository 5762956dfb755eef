"""Figures of runs, comparisons and trigger sweeps (matplotlib, Agg, PNG).

Role
----
Each ``plot_*`` function takes plain arrays (no file access) and returns a
:class:`matplotlib.figure.Figure` built without :mod:`matplotlib.pyplot`, so nothing is
registered in pyplot's global figure manager and nothing leaks between calls;
:func:`save_figure` renders it with the Agg canvas and releases it. The ``*_data`` helpers
read only the columns a figure needs from a run or batch directory.

Figures
-------
- :func:`plot_delivery_ratio`: one node's cumulative delivery ratio ``F_i(t)`` per policy
  against its target, its tier's aggregate ratio ``F^agg(t)`` (dashed); scarce intervals
  shaded.
- :func:`plot_fairness_decay`: ``max_i e_i(t)`` on log-log axes per policy with a
  ``t^(-1/2)`` reference line (the O(1/√T) rate of Thm 5).
- :func:`plot_memory_heatmap`: shortage memory ``s_i(t)`` as a node x time heat map (time
  binned to at most ``max_columns`` columns, each the bin's maximum), scarcity marked above.
- :func:`plot_amm_price`: the AMM scarcity price and the screened shortfall fraction.
- :func:`plot_final_deviation`: ``F_i(T) - F^agg_tier(T)`` of every node per policy.
- :func:`plot_tradeoff`: the computation-fidelity curve of a trigger sweep (fraction of
  intervals solved vs max tracking error, one labelled point per ``θ``).

No Pyomo here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from fpamm_opt.errors import RunDirectoryError
from fpamm_opt.io.reader import read_table
from fpamm_opt.verify.panel import bool_array, pivot

#: Colours and labels per policy (others cycle through matplotlib's defaults).
POLICY_STYLE: dict[str, dict[str, str]] = {
    "fpamm": {"color": "#1b6ca8", "label": "FP-AMM"},
    "equal": {"color": "#d1495b", "label": "equal weights"},
    "lmp": {"color": "#6c757d", "label": "LMP"},
}
SCARCE_COLOR = "#f2a541"
#: Default heat-map width (time columns).
MAX_COLUMNS = 2000
DPI = 110

#: Trigger-threshold column of a sweep index.
THETA_COLUMN = "mechanism.trigger_theta"


def _style(policy: str, k: int) -> dict[str, str]:
    default = {"color": f"C{k}", "label": policy}
    return {**default, **POLICY_STYLE.get(policy, {})}


def new_figure(width: float = 8.0, height: float = 4.0) -> Figure:
    """A figure attached to an Agg canvas (not registered with pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path | str, dpi: int = DPI) -> Path:
    """Render ``fig`` to a PNG file and release its artists; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, format="png")
    fig.clear()
    return path


def scarce_spans(t: np.ndarray, scarce: np.ndarray) -> list[tuple[float, float]]:
    """Contiguous scarce stretches as ``(start, end)`` in ``t`` units (end exclusive)."""
    s = np.asarray(scarce, dtype=bool)
    t = np.asarray(t, dtype=float)
    if s.size == 0 or not s.any():
        return []
    edges = np.diff(np.concatenate([[0], s.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    return [(float(t[a]) - step / 2, float(t[b - 1]) + step / 2) for a, b in zip(starts, ends)]


def _shade(ax: Axes, t: np.ndarray, scarce: np.ndarray | None, label: bool = True) -> None:
    """Shade scarce intervals (one polygon collection, however many windows)."""
    spans = [] if scarce is None else scarce_spans(t, scarce)
    if not spans:
        return
    ax.broken_barh(
        [(a, b - a) for a, b in spans],
        (0, 1),
        transform=ax.get_xaxis_transform(),
        color=SCARCE_COLOR,
        alpha=0.25,
        lw=0,
        label="scarce intervals" if label else None,
    )


def plot_delivery_ratio(
    t: np.ndarray,
    ratios: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    scarce: np.ndarray | None = None,
    title: str = "",
    burn_in: int | None = None,
) -> Figure:
    """One node's delivery ratio per policy against its tier's aggregate, and the gap.

    Top: ``F_i(t)`` (solid) and the target, its tier's ``F^agg(t)`` (dashed, same colour).
    Bottom (log scale): the fairness error ``|F_i(t) - F^agg(t)|`` with its peak over the
    scarce intervals after the burn-in marked (the peak weak-bus error).

    Parameters
    ----------
    t : (T,) array
        Interval ids.
    ratios : mapping
        ``F_i(t)`` per policy.
    targets : mapping
        The target per policy (its tier's ``F^agg(t)``).
    scarce : (T,) bool array, optional
        Scarce intervals, shaded.
    title : str
    burn_in : int, optional
        Leading intervals excluded from the peak (a dotted line marks the end).
    """
    t = np.asarray(t)
    fig = new_figure(9, 5.8)
    ax, ax_e = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    _shade(ax, t, scarce)
    _shade(ax_e, t, scarce, label=False)
    mask = np.ones(t.size, bool) if scarce is None else np.asarray(scarce, bool).copy()
    if burn_in:
        mask[: int(burn_in)] = False
    for k, (p, f) in enumerate(ratios.items()):
        st = _style(p, k)
        ax.plot(t, f, color=st["color"], lw=1.4, label=f"{st['label']}: node")
        if p not in targets:
            continue
        target = np.asarray(targets[p], dtype=float)
        ax.plot(
            t,
            target,
            color=st["color"],
            lw=1.0,
            ls="--",
            alpha=0.8,
            label=f"{st['label']}: tier aggregate (target)",
        )
        e = np.abs(np.asarray(f, dtype=float) - target)
        pos = e > 0
        ax_e.plot(t[pos], e[pos], color=st["color"], lw=1.1)
        if mask.any() and np.isfinite(e[mask]).any():
            j = int(np.flatnonzero(mask)[np.nanargmax(e[mask])])
            ax_e.plot([t[j]], [e[j]], "o", color=st["color"], ms=6, mfc="none", mew=1.6)
    if burn_in:
        for a in (ax, ax_e):
            a.axvline(t[min(int(burn_in), t.size - 1)], color="k", ls=":", lw=1.0)
    ax.set_ylabel("cumulative delivery ratio F(t)")
    ax.set_title(title or "delivery ratio against the tier's aggregate")
    _zoom_ratio_axis(ax, t, [*ratios.values(), *targets.values()])
    ax.grid(alpha=0.3)
    if np.any(
        [
            np.any(np.abs(np.asarray(r) - np.asarray(targets.get(p, r))) > 0)
            for p, r in ratios.items()
        ]
    ):
        ax_e.set_yscale("log")
    ax_e.set_ylabel("|F - target|\n(o: peak after burn-in)", fontsize=9)
    ax_e.set_xlabel("interval t" + ("  (dotted: end of the burn-in)" if burn_in else ""))
    ax_e.grid(alpha=0.3, which="both")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    return fig


def _zoom_ratio_axis(ax: Axes, t: np.ndarray, series: Sequence[np.ndarray]) -> None:
    """Y range from the values after the first 5% of intervals (the start is all 1s)."""
    if not series or len(t) == 0:
        return
    k0 = int(len(t) * 0.05)
    vals = np.concatenate([np.asarray(s, dtype=float)[k0:] for s in series])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return
    lo, hi = float(vals.min()), float(vals.max())
    pad = max(0.1 * (hi - lo), 1e-4)
    ax.set_ylim(lo - pad, min(hi + pad, 1.0 + pad))


def plot_fairness_decay(
    errors: Mapping[str, np.ndarray],
    window: tuple[float, float] = (1 / 20, 1.0),
    title: str = "",
) -> Figure:
    """``max_i e_i(t)`` against ``t`` on log-log axes, with a ``t^(-1/2)`` reference.

    Parameters
    ----------
    errors : mapping
        ``max_i |F_i(t) - F^agg_tier(t)|`` per policy, index ``k-1`` for ``t = k = 1..T``.
    window : (float, float)
        The window T5 judges (``[T/20, T]``) as fractions of ``T``, shaded.
    """
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    n = max((len(e) for e in errors.values()), default=0)
    anchor: tuple[float, float] | None = None
    for k, (p, e) in enumerate(errors.items()):
        e = np.asarray(e, dtype=float)
        tt = np.arange(1, e.size + 1, dtype=float)
        ok = np.isfinite(e) & (e > 0)
        st = _style(p, k)
        ax.plot(tt[ok], e[ok], color=st["color"], lw=1.2, label=st["label"])
        if anchor is None and ok.any():
            k_lo = max(1, math.ceil(e.size * window[0]))
            idx = np.flatnonzero(ok & (tt >= k_lo))
            j = int(idx[0]) if idx.size else int(np.flatnonzero(ok)[0])
            anchor = (tt[j], e[j])
    if anchor is not None and n > 1:
        ref_t = np.geomspace(max(anchor[0] / 4, 1.0), n, 50)
        ax.plot(
            ref_t,
            anchor[1] * (ref_t / anchor[0]) ** -0.5,
            color="k",
            ls=":",
            lw=1.2,
            label=r"$\propto t^{-1/2}$ reference",
        )
    if n > 1:
        ax.axvspan(
            max(1.0, n * window[0]),
            n * window[1],
            color="#999999",
            alpha=0.12,
            lw=0,
            label="window T5 judges [T/20, T]",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("interval t")
    ax.set_ylabel(r"max fairness error $\max_i |F_i(t) - F^{agg}_{tier}(t)|$")
    ax.set_title(title or "fairness error decay (log-log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def bin_max(values: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Bin the rows (time) of a ``(T, n)`` array to at most ``max_columns`` by their maximum.

    Returns the binned ``(ceil(T / k), n)`` array and the bin width ``k``.
    """
    a = np.asarray(values, dtype=float)
    n_t = a.shape[0]
    if n_t <= max_columns:
        return a, 1
    k = math.ceil(n_t / max_columns)
    pad = (-n_t) % k
    if pad:
        a = np.concatenate([a, np.full((pad, *a.shape[1:]), np.nan)], axis=0)
    b = a.reshape(-1, k, *a.shape[1:])
    with np.errstate(all="ignore"):
        out = np.where(
            np.all(np.isnan(b), axis=1),
            np.nan,
            np.nanmax(np.where(np.isnan(b), -np.inf, b), axis=1),
        )
    return out, k


def plot_memory_heatmap(
    t: np.ndarray,
    memories: Mapping[str, np.ndarray],
    scarce: np.ndarray | None = None,
    node_labels: Sequence[str] | None = None,
    max_columns: int = MAX_COLUMNS,
    title: str = "",
) -> Figure:
    """Shortage memory ``s_i(t)`` as node x time heat maps (one per policy, one colour scale).

    Parameters
    ----------
    t : (T,) array
        Interval ids.
    memories : mapping
        ``(T, n)`` memory per policy (same nodes in the same order).
    scarce : (T,) bool array, optional
        Scarce intervals, drawn as a strip above the maps.
    node_labels : sequence of str, optional
        One label per node (row).
    max_columns : int
        Time is binned to at most this many columns (bin maximum).
    """
    t = np.asarray(t)
    n_map = max(len(memories), 1)
    fig = new_figure(10, 1.0 + 2.6 * n_map)
    ratios = [0.35] + [4.0] * n_map
    gs = fig.add_gridspec(n_map + 1, 2, height_ratios=ratios, width_ratios=[40, 1])
    strip = fig.add_subplot(gs[0, 0])
    binned = {p: bin_max(m, max_columns) for p, m in memories.items()}
    vmax = max(
        (float(np.nanmax(b)) for b, _ in binned.values() if np.isfinite(b).any()), default=1.0
    )
    vmax = max(vmax, 1e-6)
    t0 = float(t[0]) if t.size else 0.0
    t1 = float(t[-1]) + 1 if t.size else 1.0
    if scarce is not None and t.size:
        sb, _ = bin_max(np.asarray(scarce, dtype=float)[:, None], max_columns)
        strip.imshow(
            sb.T,
            aspect="auto",
            cmap=ListedColormap(["white", SCARCE_COLOR]),
            vmin=0,
            vmax=1,
            extent=(t0, t1, 0, 1),
            interpolation="nearest",
        )
    strip.set_yticks([])
    strip.tick_params(bottom=False, labelbottom=False)
    strip.set_ylabel("scarce", rotation=0, ha="right", va="center", fontsize=8)
    strip.set_title(title or "shortage memory s_i(t) by node")
    im = None
    axes = []
    for k, (p, (b, width)) in enumerate(binned.items()):
        ax = fig.add_subplot(gs[k + 1, 0], sharex=strip)
        n_node = b.shape[1]
        im = ax.imshow(
            b.T,
            aspect="auto",
            cmap="magma_r",
            vmin=0,
            vmax=vmax,
            extent=(t0, t1, n_node - 0.5, -0.5),
            interpolation="nearest",
        )
        st = _style(p, k)
        note = f" (bins of {width} intervals, max)" if width > 1 else ""
        ax.set_ylabel(f"{st['label']}\nnode", fontsize=9)
        if node_labels is not None and n_node <= 40:
            ax.set_yticks(range(n_node))
            ax.set_yticklabels(list(node_labels), fontsize=6)
        if k == n_map - 1:
            ax.set_xlabel(f"interval t{note}")
        else:
            ax.tick_params(labelbottom=False)
        axes.append(ax)
    if im is not None:
        cax = fig.add_subplot(gs[1:, 1])
        fig.colorbar(im, cax=cax, label="shortage memory s")
    return fig


def plot_amm_price(
    t: np.ndarray,
    price: np.ndarray,
    shortfall_fraction: np.ndarray | None = None,
    scarce: np.ndarray | None = None,
    title: str = "",
) -> Figure:
    """The AMM scarcity price over time, and the screened shortfall fraction on a twin axis.

    Parameters
    ----------
    t : (T,) array
    price : (T,) array
        ``p(t) = p_cap (1 - min(1, S/D))`` ($/MWh).
    shortfall_fraction : (T,) array, optional
        ``max(0, 1 - S/D)`` with ``S`` the deliverable supply of the screen.
    scarce : (T,) bool array, optional
        Shaded.
    """
    fig = new_figure(9, 3.8)
    ax = fig.add_subplot()
    _shade(ax, t, scarce)
    ax.plot(t, price, color="#1b6ca8", lw=1.0, drawstyle="steps-mid", label="AMM price")
    ax.set_xlabel("interval t")
    ax.set_ylabel("AMM scarcity price ($/MWh)", color="#1b6ca8")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if shortfall_fraction is not None:
        ax2 = ax.twinx()
        ax2.fill_between(
            t,
            100 * np.asarray(shortfall_fraction, dtype=float),
            step="mid",
            color="#d1495b",
            alpha=0.25,
            lw=0,
            label="screened shortfall (% of demand, right axis)",
        )
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax2.set_ylabel("shortfall (% of demand)", color="#d1495b")
        ax2.set_ylim(bottom=0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.set_ylim(bottom=0)
    ax.set_title(title or "AMM scarcity price")
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    return fig


def plot_final_deviation(
    node_labels: Sequence[str],
    deviations: Mapping[str, np.ndarray],
    highlight: Mapping[str, int] | None = None,
    title: str = "",
    separate: Sequence[str] = ("lmp",),
) -> Figure:
    """``F_i(T) - F^agg_tier(T)`` per node and policy (0 = exactly the tier's ratio).

    Parameters
    ----------
    node_labels : sequence of str
        One label per node (x axis).
    deviations : mapping
        ``(n,)`` final deviation per policy.
    highlight : mapping, optional
        ``{caption: node position}`` marked with a vertical band.
    separate : sequence of str
        Policies drawn in a panel of their own below (LMP's deviations are an order of
        magnitude larger and would flatten the others).
    """
    n = len(node_labels)
    groups = [{p: d for p, d in deviations.items() if p not in separate}]
    below = {p: d for p, d in deviations.items() if p in separate}
    if below:
        groups.append(below)
    groups = [g for g in groups if g]
    fig = new_figure(max(7.0, min(0.22 * n + 3, 16)), 1.2 + 2.8 * len(groups))
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(n)
    order = list(deviations)
    for ax, group in zip(axes, groups):
        width = 0.8 / max(len(group), 1)
        for k, (p, d) in enumerate(group.items()):
            st = _style(p, order.index(p))
            ax.bar(
                x - 0.4 + width * (k + 0.5), d, width=width, color=st["color"], label=st["label"]
            )
        for k, (caption, pos) in enumerate((highlight or {}).items()):
            ax.axvspan(pos - 0.5, pos + 0.5, color=f"C{k + 4}", alpha=0.15, lw=0, label=caption)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylabel(r"$F_i(T) - F^{agg}_{tier}(T)$")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(list(node_labels), rotation=90 if n > 20 else 0, fontsize=7)
    axes[-1].set_xlabel("node (bus)")
    axes[0].set_title(title or "final delivery ratio relative to the tier (above 0: over-served)")
    return fig


def plot_tradeoff(table: pd.DataFrame, title: str = "") -> Figure:
    """The computation-fidelity curve: fraction of intervals solved vs max tracking error.

    Parameters
    ----------
    table : DataFrame
        Columns ``theta``, ``fraction_solved``, ``max_tracking_error`` (one row per ``θ``).
    """
    fig = new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    df = table.sort_values("theta")
    x = df["fraction_solved"].to_numpy(dtype=float)
    y = df["max_tracking_error"].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    ax.plot(x[ok], y[ok], "-o", color="#1b6ca8", lw=1.2, ms=6)
    for th, xi, yi, good in zip(df["theta"], x, y, ok):
        if good:
            ax.annotate(
                f"θ={th:g}", (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8
            )
    ax.set_xlabel("fraction of intervals solved")
    ax.set_ylabel("max tracking error ‖r - r*‖∞")
    ax.set_title(title or "event-triggered execution: computation vs fidelity")
    ax.grid(alpha=0.3)
    return fig


# ------------------------------------------------------------------ data from directories
def node_arrays(
    run_dir: Path | str, values: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``t``, ``node``, ``bus``, ``tier`` and ``(T, n)`` arrays of the ``nodes`` columns asked.

    Only ``t``, ``node``, ``bus``, ``tier`` and ``values`` are read.
    """
    cols = ["t", "node", "bus", "tier", *[v for v in values if v not in ("bus", "tier")]]
    df = read_table(run_dir, "nodes", columns=cols)
    t, node, arr = pivot(df, "node", list(values), fill=np.nan, table="nodes")
    first = df.drop_duplicates("node").set_index("node")
    bus = first["bus"].reindex(node).to_numpy()
    tier = first["tier"].reindex(node).to_numpy()
    return t, node, bus, tier, arr


def interval_arrays(run_dir: Path | str, columns: Sequence[str]) -> pd.DataFrame:
    """The ``intervals`` table with ``t`` and ``columns`` only, sorted by ``t``."""
    cols = ["t", *[c for c in columns if c != "t"]]
    df = read_table(run_dir, "intervals", columns=cols)
    return df.sort_values("t", kind="stable").reset_index(drop=True)


def scarce_mask(intervals: pd.DataFrame) -> np.ndarray:
    """The ``scarce`` column as a boolean array."""
    return bool_array(intervals["scarce"])


def shortfall_fraction(intervals: pd.DataFrame) -> np.ndarray:
    """``max(0, 1 - deliverable / demand)`` per interval (the screen's shortfall)."""
    d = intervals["demand_mw"].to_numpy(dtype=float)
    s = intervals["deliverable_mw"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(d > 0, 1.0 - s / np.where(d > 0, d, 1.0), 0.0)
    return np.clip(f, 0.0, 1.0)


def tradeoff_data(batch_dir: Path | str) -> pd.DataFrame | None:
    """The trade-off table of a trigger sweep, ``None`` when ``θ`` is not swept.

    Reads ``index.parquet`` and, of each complete run, the ``executed`` and
    ``tracking_error`` columns of ``intervals.parquet``. Runs sharing a ``θ`` (other swept
    values, seeds) are pooled: fraction solved = share of executed intervals, max tracking
    error = the largest audited error (0 when every interval was solved, ``nan`` when held
    intervals were not audited).

    Returns
    -------
    DataFrame or None
        ``theta``, ``fraction_solved``, ``max_tracking_error``, ``n_runs``, ``n_intervals``,
        ``n_audited``.
    """
    from fpamm_opt.io.batch import read_batch, read_index_table, swept_columns

    index = read_index_table(batch_dir)
    if THETA_COLUMN not in swept_columns(index):
        return None
    df = read_batch(batch_dir, "intervals", columns=["executed", "tracking_error"])
    if df.empty:
        raise RunDirectoryError(f"batch {batch_dir}: no complete run to plot")
    df["executed"] = bool_array(df["executed"])
    rows = []
    for theta, g in df.groupby(THETA_COLUMN, sort=True):
        err = g["tracking_error"].to_numpy(dtype=float, na_value=np.nan)
        held = ~g["executed"].to_numpy(dtype=bool)
        fin = np.isfinite(err) & held
        if fin.any():
            max_err = float(err[fin].max())
        elif not held.any():
            max_err = 0.0
        else:
            max_err = math.nan
        rows.append(
            {
                "theta": float(theta),
                "fraction_solved": float(g["executed"].mean()),
                "max_tracking_error": max_err,
                "n_runs": int(g["run_id"].nunique()),
                "n_intervals": len(g),
                "n_audited": int(fin.sum()),
            }
        )
    return pd.DataFrame(rows)
